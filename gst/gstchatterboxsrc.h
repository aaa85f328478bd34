/* gstchatterboxsrc.h — the chatterboxsrc element: Chatterbox text-to-speech as a GStreamer source. */
#pragma once

#include <gst/base/gstpushsrc.h>

#include "chatterbox.h"
#include "enginepool.h"
#include "textqueue.h"

G_BEGIN_DECLS

#define GST_TYPE_CHATTERBOX_SRC (gst_chatterbox_src_get_type ())
G_DECLARE_FINAL_TYPE (GstChatterboxSrc, gst_chatterbox_src, GST, CHATTERBOX_SRC, GstPushSrc)

typedef enum {
  GST_CHATTERBOX_DEVICE_AUTO,
  GST_CHATTERBOX_DEVICE_CPU,
  GST_CHATTERBOX_DEVICE_CUDA,
} GstChatterboxDevice;

typedef enum {
  GST_CHATTERBOX_PRECISION_FP32,
  GST_CHATTERBOX_PRECISION_BF16,
} GstChatterboxPrecision;

struct _GstChatterboxSrc {
  GstPushSrc parent;
  GstPad *sinkpad;

  /* properties, protected by the object lock */
  gchar *text;
  gchar *model_location;
  gchar *voice;
  gdouble exaggeration, cfg_weight, temperature, min_p, top_p, repetition_penalty;
  gint64 seed;
  gint max_tokens, chunk_tokens;
  gboolean alignment_guard;
  GstClockTime flush_timeout;
  GstChatterboxDevice device;
  GstChatterboxPrecision precision;
  gint threads;
  gboolean is_live;
  gboolean recompile;          /* `recompile` asked; the streaming thread rebuilds before the next utterance */

  /* engine: acquired in NULL→READY, released in READY→NULL */
  CbsEngineHandle *engine;
  GstClockTime latency;        /* first-chunk latency (live mode), object lock */

  /* text from the sink pad, protected by the object lock; text_cond signals changes */
  CbsTextQueue *queue;
  GCond text_cond;
  gboolean text_eos;           /* upstream EOS received */
  gboolean flushing;           /* unlock() called / flushing seek */
  gint64 last_text_us;         /* monotonic time of the last text buffer */
  gboolean pad_mode;           /* text comes from the sink pad (it is linked) */

  /* streaming thread state between start and stop */
  CbUtterance *utterance;      /* reused for every utterance of the current engine */
  CbVoice *voice_obj;          /* loaded `voice` (NULL: the model's built-in voice) */
  gchar *voice_loaded;         /* the path voice_obj came from */
  gboolean text_done;          /* the text property has been taken */
  gboolean speaking;           /* an utterance is being read out */
  gboolean s16;                /* negotiated S16LE (else F32LE) */
  gboolean discont;            /* next buffer starts after a flush */
  gboolean segment_sent;       /* live: we pushed the segment ourselves (before a GAP) */
  guint64 samples;             /* samples pushed since start: offsets (and timestamps when not live) */
  GstClockTime next_ts;        /* live: end of the last buffer pushed */
  guint utterance_index;       /* utterances begun since start: seed derivation */
  /* per-utterance stats */
  gint64 begin_us, first_audio_us, setup_us;
  gsize utterance_chars;
  guint64 utterance_samples;
};

GST_ELEMENT_REGISTER_DECLARE (chatterboxsrc);

G_END_DECLS
