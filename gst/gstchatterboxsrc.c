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
 * The model is located, opened, validated and built in NULL→READY. The `text` property is spoken
 * once, then EOS: each buffer is one streaming chunk of the engine (T3 → S3Gen → HiFT) as soon as
 * it is ready, timestamped from the running sample count. (Issue 6 adds the text pad, the live mode
 * and the remaining properties.)
 */
#include "gstchatterboxsrc.h"

#include <gst/audio/audio.h>
#include <math.h>
#include <string.h>

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
static gboolean gst_chatterbox_src_stop (GstBaseSrc *bsrc);
static gboolean gst_chatterbox_src_unlock (GstBaseSrc *bsrc);
static gboolean gst_chatterbox_src_set_caps (GstBaseSrc *bsrc, GstCaps *caps);
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
  basesrc_class->stop = GST_DEBUG_FUNCPTR (gst_chatterbox_src_stop);
  basesrc_class->unlock = GST_DEBUG_FUNCPTR (gst_chatterbox_src_unlock);
  basesrc_class->set_caps = GST_DEBUG_FUNCPTR (gst_chatterbox_src_set_caps);
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
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (bsrc);
  self->text_done = self->speaking = FALSE;
  self->samples = 0;
  return TRUE;
}

static gboolean
gst_chatterbox_src_stop (GstBaseSrc *bsrc)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (bsrc);
  cb_utterance_free (self->utterance);
  self->utterance = NULL;
  self->speaking = FALSE;
  return TRUE;
}

/* Called from another thread to interrupt create(): the engine stops the utterance at its next
 * check (a T3 step, an estimator evaluation or a HiFT window). */
static gboolean
gst_chatterbox_src_unlock (GstBaseSrc *bsrc)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (bsrc);
  GST_OBJECT_LOCK (self);
  if (self->utterance)
    cb_utterance_cancel (self->utterance);
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

static gboolean
gst_chatterbox_src_set_caps (GstBaseSrc *bsrc, GstCaps *caps)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (bsrc);
  GstAudioInfo info;
  if (!gst_audio_info_from_caps (&info, caps))
    return FALSE;
  self->s16 = GST_AUDIO_INFO_FORMAT (&info) == GST_AUDIO_FORMAT_S16LE;
  return TRUE;
}

/* Starts speaking the text property; FALSE (with *ret set) when there is nothing to say. */
static gboolean
gst_chatterbox_src_begin_text (GstChatterboxSrc *self, GstFlowReturn *ret)
{
  GError *err = NULL;
  GST_OBJECT_LOCK (self);
  gchar *text = g_strdup (self->text);
  GST_OBJECT_UNLOCK (self);
  self->text_done = TRUE;
  *ret = GST_FLOW_EOS;

  gboolean empty = TRUE;
  for (const gchar *p = text; p && *p && empty; p++)
    empty = g_ascii_isspace (*p);
  if (empty) {
    GST_ELEMENT_WARNING (self, STREAM, FORMAT, ("No text to speak."),
        ("the text property is empty or whitespace only; nothing is spoken"));
    g_free (text);
    return FALSE;
  }
  if (!self->utterance) {
    CbUtterance *u = cb_utterance_new (self->engine, 0, 0, &err);
    if (!u)
      goto failed;
    GST_OBJECT_LOCK (self);
    self->utterance = u;
    GST_OBJECT_UNLOCK (self);
  }
  CbUtteranceParams params;
  cb_utterance_params_init (&params);
  params.max_tokens = MIN (params.max_tokens, cb_utterance_default_max_tokens (self->engine));
  if (!cb_utterance_begin (self->utterance, text, NULL, &params, &err))
    goto failed;
  GST_INFO_OBJECT (self, "speaking: %s", cb_utterance_text (self->utterance));
  g_free (text);
  self->speaking = TRUE;
  return TRUE;

  /* ERRORS */
failed:
  {
    if (err->domain == CB_ERROR && err->code == CB_ERROR_INVALID_ARGUMENT) {
      GST_ELEMENT_WARNING (self, STREAM, FORMAT, ("Text not spoken."), ("%s", err->message));
    } else {
      GST_ELEMENT_ERROR (self, LIBRARY, INIT, ("Could not start speaking."), ("%s", err->message));
      *ret = GST_FLOW_ERROR;
    }
    g_free (text);
    g_error_free (err);
    return FALSE;
  }
}

static GstBuffer *
gst_chatterbox_src_make_buffer (GstChatterboxSrc *self, const float *pcm, gsize n)
{
  GstBuffer *buf = gst_buffer_new_allocate (NULL, n * (self->s16 ? 2 : 4), NULL);
  GstMapInfo map;
  gst_buffer_map (buf, &map, GST_MAP_WRITE);
  if (self->s16) {
    gint16 *out = (gint16 *) map.data;
    for (gsize i = 0; i < n; i++)
      out[i] = (gint16) lrintf (CLAMP (pcm[i], -1.0f, 1.0f) * 32767.0f);
  } else {
    memcpy (map.data, pcm, n * sizeof (float));
  }
  gst_buffer_unmap (buf, &map);
  GST_BUFFER_OFFSET (buf) = self->samples;
  GST_BUFFER_OFFSET_END (buf) = self->samples + n;
  GST_BUFFER_PTS (buf) = gst_util_uint64_scale_int (self->samples, GST_SECOND, CB_SAMPLE_RATE);
  GST_BUFFER_DURATION (buf) =
      gst_util_uint64_scale_int (self->samples + n, GST_SECOND, CB_SAMPLE_RATE) - GST_BUFFER_PTS (buf);
  self->samples += n;
  return buf;
}

static GstFlowReturn
gst_chatterbox_src_create (GstPushSrc *psrc, GstBuffer **buf)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (psrc);
  GstFlowReturn ret;
  GError *err = NULL;

  if (!self->speaking) {
    if (self->text_done)
      return GST_FLOW_EOS;
    if (!gst_chatterbox_src_begin_text (self, &ret))
      return ret;
  }
  for (;;) {
    const float *pcm;
    gsize n;
    gboolean done;
    if (!cb_utterance_read_audio (self->utterance, &pcm, &n, &done, &err))
      goto failed;
    if (done)
      self->speaking = FALSE;
    if (n > 0) {
      *buf = gst_chatterbox_src_make_buffer (self, pcm, n);
      return GST_FLOW_OK;
    }
    if (done)
      return GST_FLOW_EOS;
  }

  /* ERRORS */
failed:
  {
    self->speaking = FALSE;
    if (err->domain == CB_ERROR && err->code == CB_ERROR_CANCELLED) {
      g_error_free (err);
      return GST_FLOW_FLUSHING;
    }
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Speech synthesis failed."), ("%s", err->message));
    g_error_free (err);
    return GST_FLOW_ERROR;
  }
}
