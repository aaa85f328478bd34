/* gstchatterboxsrc.h — the chatterboxsrc element: Chatterbox text-to-speech as a GStreamer source. */
#pragma once

#include <gst/base/gstpushsrc.h>

#include "chatterbox.h"

G_BEGIN_DECLS

#define GST_TYPE_CHATTERBOX_SRC (gst_chatterbox_src_get_type ())
G_DECLARE_FINAL_TYPE (GstChatterboxSrc, gst_chatterbox_src, GST, CHATTERBOX_SRC, GstPushSrc)

struct _GstChatterboxSrc {
  GstPushSrc parent;

  /* properties, protected by the object lock */
  gchar *text;
  gchar *model_location;
  gint threads;

  /* built in NULL→READY, freed in READY→NULL; used only by the streaming thread in between */
  CbEngine *engine;
  /* streaming thread state between start and stop */
  CbUtterance *utterance;   /* made at the first text, reused for every later one */
  gboolean text_done;       /* the text property has been taken */
  gboolean speaking;        /* an utterance is being read out */
  gboolean s16;             /* negotiated S16LE (else F32LE) */
  guint64 samples;          /* samples pushed since start: timestamps and offsets */
};

GST_ELEMENT_REGISTER_DECLARE (chatterboxsrc);

G_END_DECLS
