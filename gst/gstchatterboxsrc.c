/* gstchatterboxsrc.c — the chatterboxsrc element.
 *
 * SECTION:element-chatterboxsrc
 *
 * Speaks text with the Chatterbox TTS model and pushes 24 kHz mono PCM.
 *
 * |[
 * gst-launch-1.0 chatterboxsrc text="Hello from Chatterbox." ! audioconvert ! wavenc ! filesink location=hello.wav
 * ]|
 *
 * Status (issue 2, the foundation): the model is located, opened and validated in NULL→READY; the
 * synthesis stages are not ported yet, so a non-empty text ends in a clear element error saying so.
 */
#include "gstchatterboxsrc.h"

#include <gst/audio/audio.h>

GST_DEBUG_CATEGORY_STATIC (chatterbox_src_debug);
#define GST_CAT_DEFAULT chatterbox_src_debug

#define DEFAULT_TEXT NULL
#define DEFAULT_MODEL_LOCATION NULL
#define DEFAULT_THREADS 0

enum {
  PROP_0,
  PROP_TEXT,
  PROP_MODEL_LOCATION,
  PROP_THREADS,
};

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS ("audio/x-raw, format = (string) { F32LE, S16LE }, rate = (int) 24000, "
                     "channels = (int) 1, layout = (string) interleaved"));

#define gst_chatterbox_src_parent_class parent_class
G_DEFINE_TYPE (GstChatterboxSrc, gst_chatterbox_src, GST_TYPE_PUSH_SRC);
GST_ELEMENT_REGISTER_DEFINE_WITH_CODE (chatterboxsrc, "chatterboxsrc", GST_RANK_NONE, GST_TYPE_CHATTERBOX_SRC,
    GST_DEBUG_CATEGORY_INIT (chatterbox_src_debug, "chatterboxsrc", 0, "Chatterbox text-to-speech source"));

static void gst_chatterbox_src_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec);
static void gst_chatterbox_src_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec);
static void gst_chatterbox_src_finalize (GObject *object);
static GstStateChangeReturn gst_chatterbox_src_change_state (GstElement *element, GstStateChange transition);
static gboolean gst_chatterbox_src_start (GstBaseSrc *bsrc);
static GstFlowReturn gst_chatterbox_src_create (GstPushSrc *psrc, GstBuffer **buf);

static void
gst_chatterbox_src_class_init (GstChatterboxSrcClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseSrcClass *basesrc_class = GST_BASE_SRC_CLASS (klass);
  GstPushSrcClass *pushsrc_class = GST_PUSH_SRC_CLASS (klass);

  gobject_class->set_property = gst_chatterbox_src_set_property;
  gobject_class->get_property = gst_chatterbox_src_get_property;
  gobject_class->finalize = gst_chatterbox_src_finalize;

  g_object_class_install_property (gobject_class, PROP_TEXT,
      g_param_spec_string ("text", "Text", "Text to speak once, then EOS (UTF-8)", DEFAULT_TEXT,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (gobject_class, PROP_MODEL_LOCATION,
      g_param_spec_string ("model-location", "Model location",
          "Directory with t3_cfg.safetensors, s3gen.safetensors, ve.safetensors, tokenizer.json and "
          "conds.pt, or a Hugging Face cache folder (default: $CHATTERBOX_MODEL_DIR, then the Hugging "
          "Face cache)", DEFAULT_MODEL_LOCATION,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (gobject_class, PROP_THREADS,
      g_param_spec_int ("threads", "Threads", "CPU threads for inference (0 = all online CPUs)", 0, 1024,
          DEFAULT_THREADS, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY));

  gst_element_class_set_static_metadata (element_class, "Chatterbox text-to-speech source",
      "Source/Audio", "Speaks text with the Chatterbox TTS model (Resemble AI)",
      "chatterboxsrc developers");
  gst_element_class_add_static_pad_template (element_class, &src_template);

  element_class->change_state = GST_DEBUG_FUNCPTR (gst_chatterbox_src_change_state);
  basesrc_class->start = GST_DEBUG_FUNCPTR (gst_chatterbox_src_start);
  pushsrc_class->create = GST_DEBUG_FUNCPTR (gst_chatterbox_src_create);
}

static void
gst_chatterbox_src_init (GstChatterboxSrc *self)
{
  self->text = DEFAULT_TEXT;
  self->model_location = DEFAULT_MODEL_LOCATION;
  self->threads = DEFAULT_THREADS;
  gst_base_src_set_format (GST_BASE_SRC (self), GST_FORMAT_TIME);
}

static void
gst_chatterbox_src_finalize (GObject *object)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (object);
  g_free (self->text);
  g_free (self->model_location);
  cb_engine_free (self->engine);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_chatterbox_src_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_TEXT:
      g_free (self->text);
      self->text = g_value_dup_string (value);
      break;
    case PROP_MODEL_LOCATION:
      g_free (self->model_location);
      self->model_location = g_value_dup_string (value);
      break;
    case PROP_THREADS:
      self->threads = g_value_get_int (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_chatterbox_src_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_TEXT:
      g_value_set_string (value, self->text);
      break;
    case PROP_MODEL_LOCATION:
      g_value_set_string (value, self->model_location);
      break;
    case PROP_THREADS:
      g_value_set_int (value, self->threads);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

/* NULL→READY builds the engine once; READY→NULL frees it. */
static gboolean
gst_chatterbox_src_build_engine (GstChatterboxSrc *self)
{
  CbEngineParams params;
  GError *err = NULL;

  cb_engine_params_init (&params);
  GST_OBJECT_LOCK (self);
  gchar *location = g_strdup (self->model_location);
  params.threads = self->threads;
  GST_OBJECT_UNLOCK (self);
  params.model_location = location;

  self->engine = cb_engine_new (&params, &err);
  g_free (location);
  if (!self->engine)
    goto engine_failed;
  GST_INFO_OBJECT (self, "model loaded from %s", cb_engine_model_dir (self->engine));
  return TRUE;

  /* ERRORS */
engine_failed:
  {
    if (err->domain == CB_ERROR && err->code == CB_ERROR_NOT_FOUND)
      GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND, ("Chatterbox model files not found."), ("%s", err->message));
    else
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ, ("Could not load the Chatterbox model."), ("%s", err->message));
    g_error_free (err);
    return FALSE;
  }
}

static GstStateChangeReturn
gst_chatterbox_src_change_state (GstElement *element, GstStateChange transition)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (element);
  GstStateChangeReturn ret;

  if (transition == GST_STATE_CHANGE_NULL_TO_READY && !gst_chatterbox_src_build_engine (self))
    return GST_STATE_CHANGE_FAILURE;

  ret = GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);

  if (transition == GST_STATE_CHANGE_READY_TO_NULL) {
    cb_engine_free (self->engine);
    self->engine = NULL;
  }
  return ret;
}

static gboolean
gst_chatterbox_src_start (GstBaseSrc *bsrc)
{
  GST_CHATTERBOX_SRC (bsrc)->text_done = FALSE;
  return TRUE;
}

static GstFlowReturn
gst_chatterbox_src_create (GstPushSrc *psrc, GstBuffer **buf)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (psrc);
  GError *err = NULL;

  if (self->text_done)
    return GST_FLOW_EOS;
  self->text_done = TRUE;

  GST_OBJECT_LOCK (self);
  gchar *text = g_strdup (self->text);
  GST_OBJECT_UNLOCK (self);

  gboolean empty = text == NULL || *g_strstrip (text) == '\0';
  g_free (text);
  if (empty) {
    GST_ELEMENT_WARNING (self, STREAM, FORMAT, ("No text to speak."),
        ("the text property is empty or whitespace only; nothing is spoken"));
    return GST_FLOW_EOS;
  }
  if (!cb_engine_synthesis_available (self->engine, &err))
    goto not_available;

  return GST_FLOW_EOS;

  /* ERRORS */
not_available:
  {
    GST_ELEMENT_ERROR (self, LIBRARY, INIT, ("Chatterbox synthesis is not complete yet."), ("%s", err->message));
    g_error_free (err);
    return GST_FLOW_ERROR;
  }
}
