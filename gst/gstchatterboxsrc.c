/* gstchatterboxsrc.c — the chatterboxsrc element.
 *
 * SECTION:element-chatterboxsrc
 *
 * Speaks text with the Chatterbox TTS model (Resemble AI) and pushes 24 kHz mono PCM as each
 * streaming chunk is ready.
 *
 * Text comes either from the `text` property (spoken once, then EOS) or, when its sink pad is
 * linked, from upstream as a text stream (`text/x-raw`, utf8 or pango-markup): the element cuts
 * the stream into sentences as they complete, so text streamed from a language model is spoken
 * while it is still being written; unfinished text is spoken after `flush-timeout` without new
 * text, or at EOS.
 *
 * |[
 * gst-launch-1.0 chatterboxsrc text="Hello from Chatterbox." ! audioconvert ! wavenc ! filesink location=hello.wav
 * gst-launch-1.0 filesrc location=story.txt ! text/x-raw,format=utf8 ! chatterboxsrc ! audioconvert ! autoaudiosink
 * ]|
 *
 * Lifecycle: NULL→READY acquires the engine (model files mapped and validated, T3, S3Gen and HiFT
 * built, the built-in voice conditioned) from a process-wide pool, so elements naming the same
 * model, precision and threads share one; every later utterance only resets per-utterance state.
 * The `recompile` action signal retires the engine; the streaming thread moves to a new one before
 * its next utterance. READY→NULL releases it.
 *
 * Timestamps: not live, from the running sample count (continuous across utterances); live
 * (`is-live`), the running time at which a buffer is produced, or the end of the previous buffer if
 * that is later — synthesis that falls behind real time leaves gaps, never drifting timestamps.
 * While a live element waits for text it sends GAP events. The LATENCY query answers the
 * first-chunk latency: measured by a short warm-up utterance when a live element starts (READY →
 * PAUSED) with an engine not measured yet, then raised to the slowest first chunk seen.
 *
 * When it acquires an engine the element posts an element message `chatterbox-engine` with
 * `model-dir`, `built` (FALSE when an engine was shared), `builds-in-process` and `time` (ns).
 * After each utterance the element posts an element message `chatterbox-stats` with: `text-chars`,
 * `speech-tokens`, `audio-seconds`, `setup-time` (ns, begin → T3 prefill), `first-audio-time` (ns,
 * begin → first buffer), `real-time-factor` (synthesis time / audio time), `guard-stopped`.
 */
#include "gstchatterboxsrc.h"

#include <gst/audio/audio.h>
#include <math.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (chatterbox_src_debug);
#define GST_CAT_DEFAULT chatterbox_src_debug

/* generate() defaults of upstream chatterbox-tts 0.1.7 (English) */
#define DEFAULT_TEXT NULL
#define DEFAULT_MODEL_LOCATION NULL
#define DEFAULT_VOICE NULL
#define DEFAULT_EXAGGERATION 0.5
#define DEFAULT_CFG_WEIGHT 0.5
#define DEFAULT_TEMPERATURE 0.8
#define DEFAULT_MIN_P 0.05
#define DEFAULT_TOP_P 1.0
#define DEFAULT_REPETITION_PENALTY 1.2
#define DEFAULT_SEED 0
#define DEFAULT_MAX_TOKENS 1000
#define DEFAULT_CHUNK_TOKENS 25
#define DEFAULT_ALIGNMENT_GUARD FALSE
#define DEFAULT_FLUSH_TIMEOUT (2 * GST_SECOND)
#define DEFAULT_DEVICE GST_CHATTERBOX_DEVICE_AUTO
#define DEFAULT_PRECISION GST_CHATTERBOX_PRECISION_FP32
#define DEFAULT_THREADS 0
#define DEFAULT_IS_LIVE FALSE

/* The end of every utterance fades out over this many samples (10 ms). */
#define FADE_OUT_SAMPLES 240

/* How often a live element waiting for text sends a GAP event. */
#define GAP_INTERVAL (100 * GST_MSECOND)

enum {
  PROP_0,
  PROP_TEXT,
  PROP_MODEL_LOCATION,
  PROP_VOICE,
  PROP_EXAGGERATION,
  PROP_CFG_WEIGHT,
  PROP_TEMPERATURE,
  PROP_MIN_P,
  PROP_TOP_P,
  PROP_REPETITION_PENALTY,
  PROP_SEED,
  PROP_MAX_TOKENS,
  PROP_CHUNK_TOKENS,
  PROP_ALIGNMENT_GUARD,
  PROP_FLUSH_TIMEOUT,
  PROP_DEVICE,
  PROP_PRECISION,
  PROP_THREADS,
  PROP_IS_LIVE,
};

enum {
  SIGNAL_RECOMPILE,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS ("audio/x-raw, format = (string) { F32LE, S16LE }, rate = (int) 24000, "
                     "channels = (int) 1, layout = (string) interleaved"));

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS ("text/x-raw, format = (string) { utf8, pango-markup }"));

#define GST_TYPE_CHATTERBOX_DEVICE (gst_chatterbox_device_get_type ())
static GType
gst_chatterbox_device_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    { GST_CHATTERBOX_DEVICE_AUTO, "CUDA when a GPU and the CUDA module are present, else the CPU", "auto" },
    { GST_CHATTERBOX_DEVICE_CPU, "The CPU", "cpu" },
    { GST_CHATTERBOX_DEVICE_CUDA, "An NVIDIA GPU through CUDA", "cuda" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstChatterboxDevice", values));
  return type;
}

#define GST_TYPE_CHATTERBOX_PRECISION (gst_chatterbox_precision_get_type ())
static GType
gst_chatterbox_precision_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    { GST_CHATTERBOX_PRECISION_FP32, "FP32 weights (the reference path)", "fp32" },
    { GST_CHATTERBOX_PRECISION_BF16, "BF16 weights for T3 and the S3Gen estimator (half the weight bytes; audio may differ)", "bf16" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstChatterboxPrecision", values));
  return type;
}

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
static gboolean gst_chatterbox_src_unlock_stop (GstBaseSrc *bsrc);
static gboolean gst_chatterbox_src_set_caps (GstBaseSrc *bsrc, GstCaps *caps);
static gboolean gst_chatterbox_src_query (GstBaseSrc *bsrc, GstQuery *query);
static GstFlowReturn gst_chatterbox_src_create (GstPushSrc *psrc, GstBuffer **buf);
static GstFlowReturn gst_chatterbox_src_sink_chain (GstPad *pad, GstObject *parent, GstBuffer *buf);
static gboolean gst_chatterbox_src_sink_event (GstPad *pad, GstObject *parent, GstEvent *event);
static void gst_chatterbox_src_recompile (GstChatterboxSrc *self);

static void
install_double (GObjectClass *klass, guint id, const gchar *name, const gchar *nick, const gchar *blurb,
                gdouble min, gdouble max, gdouble def)
{
  g_object_class_install_property (klass, id, g_param_spec_double (name, nick, blurb, min, max, def,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING));
}

static void
gst_chatterbox_src_class_init (GstChatterboxSrcClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseSrcClass *basesrc_class = GST_BASE_SRC_CLASS (klass);
  GstPushSrcClass *pushsrc_class = GST_PUSH_SRC_CLASS (klass);
  const GParamFlags rw_playing = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING;
  const GParamFlags rw_ready = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;

  gobject_class->set_property = gst_chatterbox_src_set_property;
  gobject_class->get_property = gst_chatterbox_src_get_property;
  gobject_class->finalize = gst_chatterbox_src_finalize;

  g_object_class_install_property (gobject_class, PROP_TEXT,
      g_param_spec_string ("text", "Text", "Text to speak once, then EOS (UTF-8; used when the sink pad is not linked)",
          DEFAULT_TEXT, rw_playing));
  g_object_class_install_property (gobject_class, PROP_MODEL_LOCATION,
      g_param_spec_string ("model-location", "Model location",
          "Directory with t3_cfg.safetensors, s3gen.safetensors, ve.safetensors, tokenizer.json and "
          "conds.pt, or a Hugging Face cache folder (default: $CHATTERBOX_MODEL_DIR, then the Hugging "
          "Face cache)", DEFAULT_MODEL_LOCATION, rw_ready));
  g_object_class_install_property (gobject_class, PROP_VOICE,
      g_param_spec_string ("voice", "Voice",
          "Voice file in upstream's conds.pt format (default: the model's built-in voice); applies from the next utterance",
          DEFAULT_VOICE, rw_playing));
  install_double (gobject_class, PROP_EXAGGERATION, "exaggeration", "Exaggeration",
      "Emotion exaggeration (0.5 neutral)", 0.0, 100.0, DEFAULT_EXAGGERATION);
  install_double (gobject_class, PROP_CFG_WEIGHT, "cfg-weight", "CFG weight",
      "Classifier-free guidance weight (0 runs the conditional pass only)", 0.0, 100.0, DEFAULT_CFG_WEIGHT);
  install_double (gobject_class, PROP_TEMPERATURE, "temperature", "Temperature",
      "Sampling temperature of the speech tokens", 0.01, 100.0, DEFAULT_TEMPERATURE);
  install_double (gobject_class, PROP_MIN_P, "min-p", "Min-p",
      "Min-p filter: drop tokens below min-p × the top probability (0 = off)", 0.0, 1.0, DEFAULT_MIN_P);
  install_double (gobject_class, PROP_TOP_P, "top-p", "Top-p",
      "Nucleus filter (1 = off)", 0.0, 1.0, DEFAULT_TOP_P);
  install_double (gobject_class, PROP_REPETITION_PENALTY, "repetition-penalty", "Repetition penalty",
      "Penalty on speech tokens already produced (1 = off)", 0.01, 100.0, DEFAULT_REPETITION_PENALTY);
  g_object_class_install_property (gobject_class, PROP_SEED,
      g_param_spec_int64 ("seed", "Seed",
          "Random seed (-1 = a random seed per utterance; otherwise utterance k of a stream uses a seed "
          "derived from this and k, so a stream is reproducible)", -1, G_MAXINT64, DEFAULT_SEED, rw_playing));
  g_object_class_install_property (gobject_class, PROP_MAX_TOKENS,
      g_param_spec_int ("max-tokens", "Max tokens",
          "Most speech tokens per utterance (25 per second of audio; capped by the model)", 1, 4096,
          DEFAULT_MAX_TOKENS, rw_playing));
  g_object_class_install_property (gobject_class, PROP_CHUNK_TOKENS,
      g_param_spec_int ("chunk-tokens", "Chunk tokens",
          "Speech tokens of the first audio chunk of an utterance (25 = 1 s); later chunks grow so each "
          "costs at most twice its audio", 1, 1000, DEFAULT_CHUNK_TOKENS, rw_playing));
  g_object_class_install_property (gobject_class, PROP_ALIGNMENT_GUARD,
      g_param_spec_boolean ("alignment-guard", "Alignment guard",
          "Run upstream's alignment-stream analyzer against repeats and cut-offs (off by default, as "
          "upstream's English model)", DEFAULT_ALIGNMENT_GUARD, rw_playing));
  g_object_class_install_property (gobject_class, PROP_FLUSH_TIMEOUT,
      g_param_spec_uint64 ("flush-timeout", "Flush timeout",
          "Nanoseconds without new text after which an unfinished sentence from the sink pad is spoken "
          "(0 = wait for the end of the sentence or EOS)", 0, G_MAXUINT64, DEFAULT_FLUSH_TIMEOUT, rw_playing));
  g_object_class_install_property (gobject_class, PROP_DEVICE,
      g_param_spec_enum ("device", "Device", "Where inference runs", GST_TYPE_CHATTERBOX_DEVICE,
          DEFAULT_DEVICE, rw_ready));
  g_object_class_install_property (gobject_class, PROP_PRECISION,
      g_param_spec_enum ("precision", "Precision", "Weight storage precision", GST_TYPE_CHATTERBOX_PRECISION,
          DEFAULT_PRECISION, rw_ready));
  g_object_class_install_property (gobject_class, PROP_THREADS,
      g_param_spec_int ("threads", "Threads", "CPU threads for inference (0 = all online CPUs)", 0, 1024,
          DEFAULT_THREADS, rw_ready));
  g_object_class_install_property (gobject_class, PROP_IS_LIVE,
      g_param_spec_boolean ("is-live", "Is live",
          "Act as a live source: timestamps from the clock, GAP events while waiting for text",
          DEFAULT_IS_LIVE, rw_ready));

  /**
   * GstChatterboxSrc::recompile:
   *
   * Rebuilds the engine (model files, weights, buffers) before the next utterance — never in the
   * middle of one. Elements sharing the engine move to the new one at their next utterance.
   */
  signals[SIGNAL_RECOMPILE] = g_signal_new_class_handler ("recompile", G_TYPE_FROM_CLASS (klass),
      G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION, G_CALLBACK (gst_chatterbox_src_recompile), NULL, NULL, NULL,
      G_TYPE_NONE, 0);

  gst_element_class_set_static_metadata (element_class, "Chatterbox text-to-speech source",
      "Source/Audio", "Speaks text with the Chatterbox TTS model (Resemble AI)",
      "chatterboxsrc developers");
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_type_mark_as_plugin_api (GST_TYPE_CHATTERBOX_DEVICE, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_CHATTERBOX_PRECISION, 0);

  element_class->change_state = GST_DEBUG_FUNCPTR (gst_chatterbox_src_change_state);
  basesrc_class->start = GST_DEBUG_FUNCPTR (gst_chatterbox_src_start);
  basesrc_class->stop = GST_DEBUG_FUNCPTR (gst_chatterbox_src_stop);
  basesrc_class->unlock = GST_DEBUG_FUNCPTR (gst_chatterbox_src_unlock);
  basesrc_class->unlock_stop = GST_DEBUG_FUNCPTR (gst_chatterbox_src_unlock_stop);
  basesrc_class->set_caps = GST_DEBUG_FUNCPTR (gst_chatterbox_src_set_caps);
  basesrc_class->query = GST_DEBUG_FUNCPTR (gst_chatterbox_src_query);
  pushsrc_class->create = GST_DEBUG_FUNCPTR (gst_chatterbox_src_create);
}

static void
gst_chatterbox_src_init (GstChatterboxSrc *self)
{
  self->text = DEFAULT_TEXT;
  self->model_location = DEFAULT_MODEL_LOCATION;
  self->voice = DEFAULT_VOICE;
  self->exaggeration = DEFAULT_EXAGGERATION;
  self->cfg_weight = DEFAULT_CFG_WEIGHT;
  self->temperature = DEFAULT_TEMPERATURE;
  self->min_p = DEFAULT_MIN_P;
  self->top_p = DEFAULT_TOP_P;
  self->repetition_penalty = DEFAULT_REPETITION_PENALTY;
  self->seed = DEFAULT_SEED;
  self->max_tokens = DEFAULT_MAX_TOKENS;
  self->chunk_tokens = DEFAULT_CHUNK_TOKENS;
  self->alignment_guard = DEFAULT_ALIGNMENT_GUARD;
  self->flush_timeout = DEFAULT_FLUSH_TIMEOUT;
  self->device = DEFAULT_DEVICE;
  self->precision = DEFAULT_PRECISION;
  self->threads = DEFAULT_THREADS;
  self->is_live = DEFAULT_IS_LIVE;
  self->latency = 0;
  self->queue = cbs_text_queue_new (0);
  g_cond_init (&self->text_cond);

  self->sinkpad = gst_pad_new_from_static_template (&sink_template, "sink");
  gst_pad_set_chain_function (self->sinkpad, GST_DEBUG_FUNCPTR (gst_chatterbox_src_sink_chain));
  gst_pad_set_event_function (self->sinkpad, GST_DEBUG_FUNCPTR (gst_chatterbox_src_sink_event));
  gst_element_add_pad (GST_ELEMENT (self), self->sinkpad);

  gst_base_src_set_format (GST_BASE_SRC (self), GST_FORMAT_TIME);
}

static void
gst_chatterbox_src_finalize (GObject *object)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (object);
  g_free (self->text);
  g_free (self->model_location);
  g_free (self->voice);
  cbs_text_queue_free (self->queue);
  g_cond_clear (&self->text_cond);
  cbs_engine_pool_release (self->engine);
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
    case PROP_VOICE:
      g_free (self->voice);
      self->voice = g_value_dup_string (value);
      break;
    case PROP_EXAGGERATION:
      self->exaggeration = g_value_get_double (value);
      break;
    case PROP_CFG_WEIGHT:
      self->cfg_weight = g_value_get_double (value);
      break;
    case PROP_TEMPERATURE:
      self->temperature = g_value_get_double (value);
      break;
    case PROP_MIN_P:
      self->min_p = g_value_get_double (value);
      break;
    case PROP_TOP_P:
      self->top_p = g_value_get_double (value);
      break;
    case PROP_REPETITION_PENALTY:
      self->repetition_penalty = g_value_get_double (value);
      break;
    case PROP_SEED:
      self->seed = g_value_get_int64 (value);
      break;
    case PROP_MAX_TOKENS:
      self->max_tokens = g_value_get_int (value);
      break;
    case PROP_CHUNK_TOKENS:
      self->chunk_tokens = g_value_get_int (value);
      break;
    case PROP_ALIGNMENT_GUARD:
      self->alignment_guard = g_value_get_boolean (value);
      break;
    case PROP_FLUSH_TIMEOUT:
      self->flush_timeout = g_value_get_uint64 (value);
      g_cond_broadcast (&self->text_cond);
      break;
    case PROP_DEVICE:
      self->device = g_value_get_enum (value);
      break;
    case PROP_PRECISION:
      self->precision = g_value_get_enum (value);
      break;
    case PROP_THREADS:
      self->threads = g_value_get_int (value);
      break;
    case PROP_IS_LIVE:
      self->is_live = g_value_get_boolean (value);
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
    case PROP_VOICE:
      g_value_set_string (value, self->voice);
      break;
    case PROP_EXAGGERATION:
      g_value_set_double (value, self->exaggeration);
      break;
    case PROP_CFG_WEIGHT:
      g_value_set_double (value, self->cfg_weight);
      break;
    case PROP_TEMPERATURE:
      g_value_set_double (value, self->temperature);
      break;
    case PROP_MIN_P:
      g_value_set_double (value, self->min_p);
      break;
    case PROP_TOP_P:
      g_value_set_double (value, self->top_p);
      break;
    case PROP_REPETITION_PENALTY:
      g_value_set_double (value, self->repetition_penalty);
      break;
    case PROP_SEED:
      g_value_set_int64 (value, self->seed);
      break;
    case PROP_MAX_TOKENS:
      g_value_set_int (value, self->max_tokens);
      break;
    case PROP_CHUNK_TOKENS:
      g_value_set_int (value, self->chunk_tokens);
      break;
    case PROP_ALIGNMENT_GUARD:
      g_value_set_boolean (value, self->alignment_guard);
      break;
    case PROP_FLUSH_TIMEOUT:
      g_value_set_uint64 (value, self->flush_timeout);
      break;
    case PROP_DEVICE:
      g_value_set_enum (value, self->device);
      break;
    case PROP_PRECISION:
      g_value_set_enum (value, self->precision);
      break;
    case PROP_THREADS:
      g_value_set_int (value, self->threads);
      break;
    case PROP_IS_LIVE:
      g_value_set_boolean (value, self->is_live);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_chatterbox_src_recompile (GstChatterboxSrc *self)
{
  GST_INFO_OBJECT (self, "recompile requested: the engine is rebuilt before the next utterance");
  GST_OBJECT_LOCK (self);
  self->recompile = TRUE;
  GST_OBJECT_UNLOCK (self);
}

/* ---- engine ---- */

/* Acquires the pooled engine for the current engine properties. Posts the element error itself. */
static gboolean
gst_chatterbox_src_acquire_engine (GstChatterboxSrc *self)
{
  CbEngineParams params;
  GError *err = NULL;

  cb_engine_params_init (&params);
  GST_OBJECT_LOCK (self);
  gchar *location = g_strdup (self->model_location);
  params.threads = self->threads;
  params.precision = self->precision == GST_CHATTERBOX_PRECISION_BF16 ? CB_PRECISION_BF16 : CB_PRECISION_FP32;
  GstChatterboxDevice device = self->device;
  GST_OBJECT_UNLOCK (self);
  params.model_location = location;

  if (device == GST_CHATTERBOX_DEVICE_CUDA)
    goto no_cuda;
  const gint64 t0 = g_get_monotonic_time ();
  gboolean built;
  CbsEngineHandle *h = cbs_engine_pool_acquire (&params, &built, &err);
  g_free (location);
  if (!h)
    goto engine_failed;
  const gint64 took = g_get_monotonic_time () - t0;
  const gchar *dir = cb_engine_model_dir (cbs_engine_handle_engine (h));
  GST_INFO_OBJECT (self, "engine for %s %s in %.0f ms", dir, built ? "built" : "shared", took / 1000.0);
  self->engine = h;
  gst_element_post_message (GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self),
          gst_structure_new ("chatterbox-engine", "model-dir", G_TYPE_STRING, dir,
              "built", G_TYPE_BOOLEAN, built, "builds-in-process", G_TYPE_UINT, cbs_engine_pool_builds (),
              "time", G_TYPE_UINT64, (guint64) took * GST_USECOND, NULL)));
  return TRUE;

  /* ERRORS */
no_cuda:
  {
    GST_ELEMENT_ERROR (self, LIBRARY, INIT, ("The CUDA device is not available."),
        ("device=cuda was asked for, but the models run on the CPU backend only so far (use device=auto or cpu)"));
    g_free (location);
    return FALSE;
  }
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

/* Drops what was made with the current engine (utterance, voice), e.g. before moving to another. */
static void
gst_chatterbox_src_drop_engine_state (GstChatterboxSrc *self)
{
  GST_OBJECT_LOCK (self);
  CbUtterance *u = self->utterance;
  self->utterance = NULL;
  GST_OBJECT_UNLOCK (self);
  cb_utterance_free (u);
  cb_voice_free (self->voice_obj);
  self->voice_obj = NULL;
  g_clear_pointer (&self->voice_loaded, g_free);
}

/* Before an utterance: a requested recompile retires the engine and acquires a new one (another
 * element sharing it may already have built it). */
static gboolean
gst_chatterbox_src_refresh_engine (GstChatterboxSrc *self)
{
  GST_OBJECT_LOCK (self);
  gboolean asked = self->recompile;
  self->recompile = FALSE;
  GST_OBJECT_UNLOCK (self);
  if (asked)
    cbs_engine_pool_recompile (self->engine);
  if (!cbs_engine_handle_retired (self->engine))
    return TRUE;
  GST_INFO_OBJECT (self, "moving to a rebuilt engine");
  gst_chatterbox_src_drop_engine_state (self);
  GST_OBJECT_LOCK (self);
  self->latency = 0;  /* the live latency of the new engine is measured by its utterances */
  GST_OBJECT_UNLOCK (self);
  CbsEngineHandle *old = self->engine;
  self->engine = NULL;
  gboolean ok = gst_chatterbox_src_acquire_engine (self);
  cbs_engine_pool_release (old);
  return ok;
}

static GstStateChangeReturn
gst_chatterbox_src_change_state (GstElement *element, GstStateChange transition)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (element);
  GstStateChangeReturn ret;

  if (transition == GST_STATE_CHANGE_NULL_TO_READY && !gst_chatterbox_src_acquire_engine (self))
    return GST_STATE_CHANGE_FAILURE;

  ret = GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);

  if (transition == GST_STATE_CHANGE_READY_TO_NULL) {
    gst_chatterbox_src_drop_engine_state (self);
    cbs_engine_pool_release (self->engine);
    self->engine = NULL;
  }
  return ret;
}

/* ---- streaming thread ---- */

/* Live mode answers LATENCY with the first-chunk latency; before any real utterance it is measured
 * once per engine with a short warm-up utterance (T3 up to the first chunk, that chunk's S3Gen and
 * HiFT). Runs in READY→PAUSED. */
static void
gst_chatterbox_src_warm_up (GstChatterboxSrc *self)
{
  GError *err = NULL;
  CbEngine *engine = cbs_engine_handle_engine (self->engine);
  if (!self->utterance) {
    CbUtterance *u = cb_utterance_new (engine, 0, 0, &err);
    if (!u)
      goto failed;
    GST_OBJECT_LOCK (self);
    self->utterance = u;
    GST_OBJECT_UNLOCK (self);
  }
  CbUtteranceParams params;
  cb_utterance_params_init (&params);
  GST_OBJECT_LOCK (self);
  params.chunk_tokens = self->chunk_tokens;
  GST_OBJECT_UNLOCK (self);
  params.max_tokens = MIN (params.chunk_tokens, cb_utterance_default_max_tokens (engine));
  const gint64 t0 = g_get_monotonic_time ();
  if (!cb_utterance_begin (self->utterance, "Hello there.", NULL, &params, &err))
    goto failed;
  gboolean done = FALSE;
  while (!done) {
    const float *pcm;
    gsize n;
    if (!cb_utterance_read_audio (self->utterance, &pcm, &n, &done, &err))
      goto failed;
    if (n > 0)
      break;
  }
  cb_utterance_cancel (self->utterance);
  GST_OBJECT_LOCK (self);
  self->latency = (GstClockTime) (g_get_monotonic_time () - t0) * GST_USECOND;
  GST_OBJECT_UNLOCK (self);
  GST_INFO_OBJECT (self, "warm-up: first-chunk latency %" GST_TIME_FORMAT, GST_TIME_ARGS (self->latency));
  return;

failed:
  GST_WARNING_OBJECT (self, "warm-up utterance failed (latency unknown until the first utterance): %s",
      err->message);
  g_error_free (err);
}

static gboolean
gst_chatterbox_src_start (GstBaseSrc *bsrc)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (bsrc);
  GST_OBJECT_LOCK (self);
  self->text_done = self->speaking = self->text_eos = self->flushing = FALSE;
  self->samples = 0;
  self->next_ts = 0;
  self->utterance_index = 0;
  self->discont = TRUE;
  self->segment_sent = FALSE;
  self->pad_mode = gst_pad_is_linked (self->sinkpad);
  gboolean live = self->is_live;
  cbs_text_queue_clear (self->queue);
  const gboolean measure = live && self->latency == 0;
  GST_OBJECT_UNLOCK (self);
  gst_base_src_set_live (bsrc, live);
  if (measure)
    gst_chatterbox_src_warm_up (self);
  return TRUE;
}

static gboolean
gst_chatterbox_src_stop (GstBaseSrc *bsrc)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (bsrc);
  GST_OBJECT_LOCK (self);
  CbUtterance *u = self->utterance;
  self->utterance = NULL;
  cbs_text_queue_clear (self->queue);
  GST_OBJECT_UNLOCK (self);
  cb_utterance_free (u);
  self->speaking = FALSE;
  return TRUE;
}

/* From another thread: interrupts create() — the engine stops the utterance at its next check (a
 * T3 step, an estimator evaluation or a HiFT window) and a wait for text ends. */
static gboolean
gst_chatterbox_src_unlock (GstBaseSrc *bsrc)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (bsrc);
  GST_DEBUG_OBJECT (self, "unlock");
  GST_OBJECT_LOCK (self);
  self->flushing = TRUE;
  if (self->utterance)
    cb_utterance_cancel (self->utterance);
  g_cond_broadcast (&self->text_cond);
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

static gboolean
gst_chatterbox_src_unlock_stop (GstBaseSrc *bsrc)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (bsrc);
  GST_DEBUG_OBJECT (self, "unlock stop");
  GST_OBJECT_LOCK (self);
  self->flushing = FALSE;
  self->discont = TRUE;
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

static gboolean
gst_chatterbox_src_query (GstBaseSrc *bsrc, GstQuery *query)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (bsrc);
  if (GST_QUERY_TYPE (query) == GST_QUERY_LATENCY) {
    GST_OBJECT_LOCK (self);
    gboolean live = self->is_live;
    GstClockTime latency = self->latency;
    GST_OBJECT_UNLOCK (self);
    gst_query_set_latency (query, live, live ? latency : 0, GST_CLOCK_TIME_NONE);
    GST_DEBUG_OBJECT (self, "latency: live %d, min %" GST_TIME_FORMAT, live, GST_TIME_ARGS (latency));
    return TRUE;
  }
  return GST_BASE_SRC_CLASS (parent_class)->query (bsrc, query);
}

/* The seed of utterance k: the `seed` property mixed with k (splitmix64), or a random one. */
static guint64
utterance_seed (gint64 seed, guint k)
{
  if (seed < 0)
    return ((guint64) g_random_int () << 32) | g_random_int ();
  guint64 z = (guint64) seed + 0x9e3779b97f4a7c15ull * (k + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* The running time now (live mode), or NONE without a clock. */
static GstClockTime
running_time_now (GstChatterboxSrc *self)
{
  GstClock *clock = gst_element_get_clock (GST_ELEMENT (self));
  if (!clock)
    return GST_CLOCK_TIME_NONE;
  GstClockTime now = gst_clock_get_time (clock), base = gst_element_get_base_time (GST_ELEMENT (self));
  gst_object_unref (clock);
  return now > base ? now - base : 0;
}

typedef enum { TEXT_READY, TEXT_NONE, TEXT_FLUSHING } TextWait;

/* Waits for the next utterance's text from the sink pad. Called with the object lock held. In live
 * mode a GAP event goes out every GAP_INTERVAL meanwhile, so the pipeline keeps running. */
static TextWait
gst_chatterbox_src_wait_text (GstChatterboxSrc *self, gchar **text)
{
  for (;;) {
    if (self->flushing)
      return TEXT_FLUSHING;
    if ((*text = cbs_text_queue_pop (self->queue)))
      return TEXT_READY;
    const gboolean pending = cbs_text_queue_has_pending (self->queue);
    if (self->text_eos) {
      if (pending) {
        cbs_text_queue_finish_pending (self->queue);
        continue;
      }
      return TEXT_NONE;
    }
    gint64 wake = g_get_monotonic_time () + (self->is_live ? GAP_INTERVAL / 1000 : G_USEC_PER_SEC);
    if (pending && self->flush_timeout > 0) {
      const gint64 due = self->last_text_us + (gint64) (self->flush_timeout / 1000);
      if (g_get_monotonic_time () >= due) {
        GST_DEBUG_OBJECT (self, "flush-timeout: speaking the unfinished text");
        cbs_text_queue_finish_pending (self->queue);
        continue;
      }
      wake = MIN (wake, due);
    }
    if (!g_cond_wait_until (&self->text_cond, GST_OBJECT_GET_LOCK (self), wake) && self->is_live) {
      /* the clock and base time take the object lock themselves */
      GST_OBJECT_UNLOCK (self);
      GstClockTime now = running_time_now (self);
      GST_LOG_OBJECT (self, "waiting for text at running time %" GST_TIME_FORMAT, GST_TIME_ARGS (now));
      if (GST_CLOCK_TIME_IS_VALID (now) && now > self->next_ts) {
        GstEvent *gap = gst_event_new_gap (self->next_ts, now - self->next_ts);
        self->next_ts = now;
        /* basesrc sends its segment only before the first buffer; a GAP needs one before it (a
         * second, identical segment from basesrc later is harmless) */
        if (!self->segment_sent) {
          gst_pad_push_event (GST_BASE_SRC_PAD (self),
              gst_event_new_segment (&GST_BASE_SRC (self)->segment));
          self->segment_sent = TRUE;
        }
        gst_pad_push_event (GST_BASE_SRC_PAD (self), gap);
      }
      GST_OBJECT_LOCK (self);
    }
  }
}

/* Takes the next text (property or sink pad) and begins its utterance. Returns GST_FLOW_OK when
 * speaking, GST_FLOW_EOS when there is nothing more, or an error/flushing. */
static GstFlowReturn
gst_chatterbox_src_next_utterance (GstChatterboxSrc *self)
{
  GError *err = NULL;
  gchar *text = NULL;
  for (;;) {
    GST_OBJECT_LOCK (self);
    GST_LOG_OBJECT (self, "next utterance (%s mode)", self->pad_mode ? "text pad" : "text property");
    if (self->pad_mode) {
      TextWait w = gst_chatterbox_src_wait_text (self, &text);
      GST_OBJECT_UNLOCK (self);
      if (w == TEXT_FLUSHING)
        return GST_FLOW_FLUSHING;
      if (w == TEXT_NONE)
        return GST_FLOW_EOS;
    } else {
      /* the property's text goes through the same segmentation: long text becomes sentences of
       * at most ~300 characters, spoken one after the other */
      if (!self->text_done) {
        self->text_done = TRUE;
        if (self->text) {
          guint bad = cbs_text_queue_push (self->queue, (const guint8 *) self->text, strlen (self->text), FALSE);
          bad += cbs_text_queue_finish_pending (self->queue);
          if (bad)
            GST_WARNING_OBJECT (self, "text property: %u invalid UTF-8 sequence(s) replaced", bad);
        }
        if (cbs_text_queue_n_ready (self->queue) == 0) {
          GST_OBJECT_UNLOCK (self);
          GST_ELEMENT_WARNING (self, STREAM, FORMAT, ("No text to speak."),
              ("the text property is empty or whitespace only; nothing is spoken"));
          return GST_FLOW_EOS;
        }
      }
      text = cbs_text_queue_pop (self->queue);
      GST_OBJECT_UNLOCK (self);
      if (!text)
        return GST_FLOW_EOS;
    }
    gboolean blank = TRUE;
    for (const gchar *p = text; p && *p && blank; p++)
      blank = g_ascii_isspace (*p);
    if (!blank)
      break;
    GST_ELEMENT_WARNING (self, STREAM, FORMAT, ("No text to speak."),
        ("the text is empty or whitespace only; nothing is spoken"));
    g_clear_pointer (&text, g_free);
    if (!self->pad_mode)
      return GST_FLOW_EOS;
  }

  if (!gst_chatterbox_src_refresh_engine (self)) {
    g_free (text);
    return GST_FLOW_ERROR;
  }
  CbEngine *engine = cbs_engine_handle_engine (self->engine);

  CbUtteranceParams params;
  cb_utterance_params_init (&params);
  GST_OBJECT_LOCK (self);
  params.exaggeration = self->exaggeration;
  params.cfg_weight = self->cfg_weight;
  params.temperature = self->temperature;
  params.min_p = self->min_p;
  params.top_p = self->top_p;
  params.repetition_penalty = self->repetition_penalty;
  params.seed = utterance_seed (self->seed, self->utterance_index);
  params.max_tokens = MIN (self->max_tokens, cb_utterance_default_max_tokens (engine));
  params.chunk_tokens = self->chunk_tokens;
  params.alignment_guard = self->alignment_guard;
  gchar *voice = g_strdup (self->voice);
  GST_OBJECT_UNLOCK (self);

  if (g_strcmp0 (voice, self->voice_loaded) != 0) {
    cb_voice_free (self->voice_obj);
    self->voice_obj = NULL;
    g_clear_pointer (&self->voice_loaded, g_free);
    if (voice && *voice && !(self->voice_obj = cb_voice_load (engine, voice, &err)))
      goto voice_failed;
    self->voice_loaded = g_strdup (voice);
  }
  if (!self->utterance) {
    CbUtterance *u = cb_utterance_new (engine, 0, 0, &err);
    if (!u)
      goto begin_failed;
    GST_OBJECT_LOCK (self);
    self->utterance = u;
    GST_OBJECT_UNLOCK (self);
  }
  self->begin_us = g_get_monotonic_time ();
  if (!cb_utterance_begin (self->utterance, text, self->voice_obj, &params, &err))
    goto begin_failed;
  self->setup_us = cb_utterance_setup_us (self->utterance);
  self->first_audio_us = 0;
  self->utterance_chars = g_utf8_strlen (text, -1);
  self->utterance_samples = 0;
  self->utterance_index++;
  GST_INFO_OBJECT (self, "utterance %u (seed %" G_GUINT64_FORMAT "): %s", self->utterance_index,
      params.seed, cb_utterance_text (self->utterance));
  g_free (text);
  g_free (voice);
  self->speaking = TRUE;
  return GST_FLOW_OK;

  /* ERRORS */
voice_failed:
  {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ, ("Could not load the voice file."), ("%s", err->message));
    g_error_free (err);
    g_free (text);
    g_free (voice);
    return GST_FLOW_ERROR;
  }
begin_failed:
  {
    g_free (voice);
    if (err->domain == CB_ERROR && err->code == CB_ERROR_INVALID_ARGUMENT) {
      /* bad text (too long for one utterance, unusable) is skipped; the stream goes on */
      GST_ELEMENT_WARNING (self, STREAM, FORMAT, ("Text not spoken."), ("%s: %s", err->message, text));
      g_error_free (err);
      g_free (text);
      return gst_chatterbox_src_next_utterance (self);
    }
    GST_ELEMENT_ERROR (self, LIBRARY, INIT, ("Could not start speaking."), ("%s", err->message));
    g_error_free (err);
    g_free (text);
    return GST_FLOW_ERROR;
  }
}

static void
gst_chatterbox_src_post_stats (GstChatterboxSrc *self)
{
  int n_tokens = 0;
  cb_utterance_speech_tokens (self->utterance, &n_tokens);
  const gdouble audio_s = self->utterance_samples / (gdouble) CB_SAMPLE_RATE;
  const gdouble took_s = (g_get_monotonic_time () - self->begin_us) / (gdouble) G_USEC_PER_SEC;
  const guint guard = cb_utterance_guard_events (self->utterance);
  GstStructure *s = gst_structure_new ("chatterbox-stats",
      "utterance", G_TYPE_UINT, self->utterance_index,
      "text-chars", G_TYPE_UINT, (guint) self->utterance_chars,
      "speech-tokens", G_TYPE_UINT, (guint) n_tokens,
      "audio-seconds", G_TYPE_DOUBLE, audio_s,
      "setup-time", G_TYPE_UINT64, (guint64) self->setup_us * GST_USECOND,
      "first-audio-time", G_TYPE_UINT64, (guint64) self->first_audio_us * GST_USECOND,
      "real-time-factor", G_TYPE_DOUBLE, audio_s > 0 ? took_s / audio_s : 0.0,
      "guard-stopped", G_TYPE_BOOLEAN, (guard & CB_GUARD_FORCED_EOS) != 0, NULL);
  GST_INFO_OBJECT (self, "utterance %u done: %d tokens, %.2f s of audio in %.2f s, set-up %" G_GINT64_FORMAT
      " us, first audio after %.0f ms", self->utterance_index, n_tokens, audio_s, took_s, self->setup_us,
      self->first_audio_us / 1000.0);
  gst_element_post_message (GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self), s));
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
  const GstClockTime dur = gst_util_uint64_scale_int (n, GST_SECOND, CB_SAMPLE_RATE);
  if (self->is_live) {
    /* the running time the buffer is produced at, but never before the previous one ends */
    GstClockTime now = running_time_now (self);
    GstClockTime ts = GST_CLOCK_TIME_IS_VALID (now) ? MAX (now, self->next_ts) : self->next_ts;
    if (ts > self->next_ts && self->samples > 0)
      GST_DEBUG_OBJECT (self, "synthesis behind real time: gap of %" GST_TIME_FORMAT, GST_TIME_ARGS (ts - self->next_ts));
    GST_BUFFER_PTS (buf) = ts;
    GST_BUFFER_DURATION (buf) = dur;
    self->next_ts = ts + dur;
  } else {
    GST_BUFFER_PTS (buf) = gst_util_uint64_scale_int (self->samples, GST_SECOND, CB_SAMPLE_RATE);
    GST_BUFFER_DURATION (buf) =
        gst_util_uint64_scale_int (self->samples + n, GST_SECOND, CB_SAMPLE_RATE) - GST_BUFFER_PTS (buf);
  }
  if (self->discont) {
    GST_BUFFER_FLAG_SET (buf, GST_BUFFER_FLAG_DISCONT);
    self->discont = FALSE;
  }
  self->samples += n;
  self->utterance_samples += n;
  return buf;
}

/* First audio of an utterance: the live latency follows the slowest first chunk seen. */
static void
gst_chatterbox_src_note_first_audio (GstChatterboxSrc *self)
{
  self->first_audio_us = g_get_monotonic_time () - self->begin_us;
  const GstClockTime lat = (GstClockTime) self->first_audio_us * GST_USECOND;
  GST_OBJECT_LOCK (self);
  gboolean changed = self->is_live && lat > self->latency;
  if (changed)
    self->latency = lat;
  GST_OBJECT_UNLOCK (self);
  if (changed)
    gst_element_post_message (GST_ELEMENT (self), gst_message_new_latency (GST_OBJECT (self)));
}

static GstFlowReturn
gst_chatterbox_src_create (GstPushSrc *psrc, GstBuffer **buf)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (psrc);
  GError *err = NULL;

  for (;;) {
    if (!self->speaking) {
      GstFlowReturn ret = gst_chatterbox_src_next_utterance (self);
      if (ret != GST_FLOW_OK)
        return ret;
    }
    const float *pcm;
    gsize n;
    gboolean done;
    if (!cb_utterance_read_audio (self->utterance, &pcm, &n, &done, &err))
      goto failed;
    if (n > 0 && self->first_audio_us == 0)
      gst_chatterbox_src_note_first_audio (self);
    if (n > 0 && done) {
      /* utterances follow each other directly: each starts from silence (upstream's trim fade),
       * and the last samples of each fade out, so no join between sentences clicks */
      float *faded = g_memdup2 (pcm, n * sizeof (float));
      const gsize m = MIN (n, FADE_OUT_SAMPLES);
      for (gsize i = 0; i < m; i++)
        faded[n - m + i] *= 0.5f * (1.0f + cosf ((float) G_PI * (i + 1) / m));
      *buf = gst_chatterbox_src_make_buffer (self, faded, n);
      g_free (faded);
    } else if (n > 0) {
      *buf = gst_chatterbox_src_make_buffer (self, pcm, n);
    }
    if (done) {
      self->speaking = FALSE;
      gst_chatterbox_src_post_stats (self);
    }
    if (n > 0)
      return GST_FLOW_OK;
  }

  /* ERRORS */
failed:
  {
    self->speaking = FALSE;
    if (err->domain == CB_ERROR && err->code == CB_ERROR_CANCELLED) {
      GST_OBJECT_LOCK (self);
      gboolean flushing = self->flushing;
      GST_OBJECT_UNLOCK (self);
      g_error_free (err);
      err = NULL;
      GST_DEBUG_OBJECT (self, "utterance cancelled (%s)", flushing ? "flushing" : "text flushed upstream");
      if (flushing)
        return GST_FLOW_FLUSHING;
      return gst_chatterbox_src_create (psrc, buf);
    }
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Speech synthesis failed."), ("%s", err->message));
    g_error_free (err);
    return GST_FLOW_ERROR;
  }
}

/* ---- text sink pad ---- */

static GstFlowReturn
gst_chatterbox_src_sink_chain (GstPad *pad, GstObject *parent, GstBuffer *buf)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (parent);
  GstCaps *caps = gst_pad_get_current_caps (pad);
  gboolean markup = FALSE;
  if (caps) {
    const gchar *format = gst_structure_get_string (gst_caps_get_structure (caps, 0), "format");
    markup = g_strcmp0 (format, "pango-markup") == 0;
    gst_caps_unref (caps);
  }
  GstMapInfo map;
  if (!gst_buffer_map (buf, &map, GST_MAP_READ)) {
    gst_buffer_unref (buf);
    return GST_FLOW_ERROR;
  }
  GST_OBJECT_LOCK (self);
  guint replaced = cbs_text_queue_push (self->queue, map.data, map.size, markup);
  self->last_text_us = g_get_monotonic_time ();
  g_cond_broadcast (&self->text_cond);
  GST_OBJECT_UNLOCK (self);
  gst_buffer_unmap (buf, &map);
  gst_buffer_unref (buf);
  if (replaced > 0)
    GST_ELEMENT_WARNING (self, STREAM, DECODE, ("Invalid UTF-8 in the text."),
        ("%u invalid byte sequence(s) replaced by U+FFFD; the rest of the text is spoken", replaced));
  return GST_FLOW_OK;
}

static gboolean
gst_chatterbox_src_sink_event (GstPad *pad, GstObject *parent, GstEvent *event)
{
  GstChatterboxSrc *self = GST_CHATTERBOX_SRC (parent);
  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_EOS:
      GST_OBJECT_LOCK (self);
      self->text_eos = TRUE;
      g_cond_broadcast (&self->text_cond);
      GST_OBJECT_UNLOCK (self);
      gst_event_unref (event);
      return TRUE;
    case GST_EVENT_FLUSH_START:
      /* queued text is dropped; what is being spoken stops */
      GST_OBJECT_LOCK (self);
      cbs_text_queue_clear (self->queue);
      if (self->utterance)
        cb_utterance_cancel (self->utterance);
      g_cond_broadcast (&self->text_cond);
      GST_OBJECT_UNLOCK (self);
      gst_event_unref (event);
      return TRUE;
    case GST_EVENT_FLUSH_STOP:
      GST_OBJECT_LOCK (self);
      self->text_eos = FALSE;
      GST_OBJECT_UNLOCK (self);
      gst_event_unref (event);
      return TRUE;
    case GST_EVENT_CAPS:
    case GST_EVENT_STREAM_START:
    case GST_EVENT_SEGMENT:
    case GST_EVENT_GAP:
      gst_event_unref (event);
      return TRUE;
    default:
      return gst_pad_event_default (pad, parent, event);
  }
}
