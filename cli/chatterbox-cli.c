/* chatterbox-cli — the engine from the command line.
 *
 * The flags are a contract other tools rely on (issue 4): --model, --text, --voice, --seed,
 * --max-tokens, --cfg-weight, --temperature, --precision, --threads, --force-tokens, --dump,
 * --check-golden, --output; --help lists them. Loading and validating a model (where it came
 * from, the tensor counts); --text alone: the normalised text, text token ids and T3's speech
 * tokens, with the sampling flags, --voice, --force-tokens and --dump (cli-t3.h); --text with
 * --output: speech through the engine's streamed audio API, --speech-tokens FILE: a whole S3Gen +
 * HiFT decode of given tokens, --noise FILE: upstream's noise injected into it (cli-audio.h);
 * --check-golden (golden-check.h).
 *
 * Exit status: 0 success; 1 a failed check or a model that does not load; 2 a requested feature
 * that is not implemented yet (or, with --strict, golden stages not implemented yet); 64 a usage
 * error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chatterbox.h"
#include "cli-audio.h"
#include "cli-model.h"
#include "cli-t3.h"
#include "golden-check.h"

#define EXIT_CHECK_FAILED 1
#define EXIT_NOT_IMPLEMENTED 2
#define EXIT_USAGE 64

typedef struct {
  char    *model;
  char    *text;
  char    *voice;
  gint64   seed;
  gboolean seed_set;
  int      max_tokens;
  double   cfg_weight;
  double   temperature;
  double   exaggeration;
  double   min_p;
  double   top_p;
  double   repetition_penalty;
  gboolean alignment_guard;
  char    *precision;
  int      threads;
  char    *force_tokens;
  char    *dump;
  char    *check_golden;
  gboolean strict;
  char    *output;
  char    *speech_tokens;
  char    *noise;
  int      chunk_tokens;
} Options;

/* Unset numeric options are recognised by these sentinels. */
#define UNSET_INT (-1)
#define UNSET_DOUBLE (-1.0)

static gboolean
parse_seed (const char *name, const char *value, gpointer data, GError **error)
{
  Options *o = data;
  char *end = NULL;
  guint64 v = g_ascii_strtoull (value, &end, 10);
  if (!*value || *end || value[0] == '-' || v > G_MAXINT64) {
    g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                 "--seed: expected an integer from 0 to %" G_GINT64_FORMAT ", got '%s'", G_MAXINT64,
                 value);
    return FALSE;
  }
  o->seed = (gint64) v;
  o->seed_set = TRUE;
  return TRUE;
}

static void
options_clear (Options *o)
{
  g_free (o->model);
  g_free (o->text);
  g_free (o->voice);
  g_free (o->precision);
  g_free (o->force_tokens);
  g_free (o->dump);
  g_free (o->check_golden);
  g_free (o->output);
  g_free (o->speech_tokens);
  g_free (o->noise);
}

/* Usage problems GOption cannot see: ranges and the precision name. NULL when fine (g_free). */
static char *
usage_problem (const Options *o)
{
  if (o->precision && strcmp (o->precision, "fp32") != 0 && strcmp (o->precision, "bf16") != 0)
    return g_strdup_printf ("--precision: expected fp32 or bf16, got '%s'", o->precision);
  if (o->threads != UNSET_INT && (o->threads < 0 || o->threads > 4096))
    return g_strdup_printf ("--threads: expected 0 (all CPUs) to 4096, got %d", o->threads);
  if (o->max_tokens != UNSET_INT && o->max_tokens < 1)
    return g_strdup_printf ("--max-tokens: expected at least 1, got %d", o->max_tokens);
  if (o->cfg_weight != UNSET_DOUBLE && !(o->cfg_weight >= 0 && o->cfg_weight <= 100))
    return g_strdup_printf ("--cfg-weight: expected 0 to 100, got %g", o->cfg_weight);
  if (o->temperature != UNSET_DOUBLE && !(o->temperature > 0 && o->temperature <= 100))
    return g_strdup_printf ("--temperature: expected more than 0, up to 100, got %g",
                            o->temperature);
  if (o->exaggeration != UNSET_DOUBLE && !(o->exaggeration >= 0 && o->exaggeration <= 100))
    return g_strdup_printf ("--exaggeration: expected 0 to 100, got %g", o->exaggeration);
  if (o->min_p != UNSET_DOUBLE && !(o->min_p >= 0 && o->min_p <= 1))
    return g_strdup_printf ("--min-p: expected 0 to 1, got %g", o->min_p);
  if (o->top_p != UNSET_DOUBLE && !(o->top_p >= 0 && o->top_p <= 1))
    return g_strdup_printf ("--top-p: expected 0 to 1, got %g", o->top_p);
  if (o->repetition_penalty != UNSET_DOUBLE
      && !(o->repetition_penalty > 0 && o->repetition_penalty <= 100))
    return g_strdup_printf ("--repetition-penalty: expected more than 0, up to 100, got %g",
                            o->repetition_penalty);
  if ((o->force_tokens || o->dump || o->voice || o->output) && !o->text && !o->speech_tokens)
    return g_strdup ("--force-tokens, --dump, --voice and --output need --text or "
                     "--speech-tokens");
  if (o->speech_tokens && (o->text || o->force_tokens))
    return g_strdup ("--speech-tokens replaces --text (and T3): give one of them");
  if (o->noise && !o->speech_tokens)
    return g_strdup ("--noise applies to --speech-tokens");
  if (o->force_tokens && o->output)
    return g_strdup ("--force-tokens is T3 teacher forcing; for audio of given tokens use "
                     "--speech-tokens");
  if (o->chunk_tokens != UNSET_INT && o->chunk_tokens < 1)
    return g_strdup_printf ("--chunk-tokens: expected at least 1, got %d", o->chunk_tokens);
  if (o->strict && !o->check_golden)
    return g_strdup ("--strict only applies to --check-golden");
  if (o->check_golden && (o->model || o->text))
    return g_strdup ("--check-golden DIR uses the model in DIR/model and the golden inputs; it "
                     "takes no --model or --text");
  return NULL;
}

static int
run_check_golden (const Options *o)
{
  CliGoldenTally tally;
  GError *err = NULL;
  if (!cli_check_golden (o->check_golden, o->threads == UNSET_INT ? 0 : o->threads, stdout, &tally,
                         &err)) {
    fprintf (stderr, "chatterbox-cli: --check-golden: %s\n", err->message);
    g_error_free (err);
    return EXIT_CHECK_FAILED;
  }
  if (tally.failed)
    return EXIT_CHECK_FAILED;
  if (tally.not_implemented && o->strict) {
    printf ("--strict: %u golden case(s) not implemented yet count as failures\n",
            tally.not_implemented);
    return EXIT_NOT_IMPLEMENTED;
  }
  return EXIT_SUCCESS;
}

/* The sampling flags over upstream's generate() defaults. */
static void
utterance_params (const Options *o, CbUtteranceParams *p)
{
  cb_utterance_params_init (p);
  if (o->seed_set)
    p->seed = (guint64) o->seed;
  if (o->max_tokens != UNSET_INT)
    p->max_tokens = o->max_tokens;
  const struct { double value; double *field; } reals[] = {
    { o->cfg_weight, &p->cfg_weight }, { o->temperature, &p->temperature },
    { o->exaggeration, &p->exaggeration }, { o->min_p, &p->min_p }, { o->top_p, &p->top_p },
    { o->repetition_penalty, &p->repetition_penalty },
  };
  for (guint i = 0; i < G_N_ELEMENTS (reals); i++)
    if (reals[i].value != UNSET_DOUBLE)
      *reals[i].field = reals[i].value;
  p->alignment_guard = o->alignment_guard;
  if (o->chunk_tokens != UNSET_INT)
    p->chunk_tokens = o->chunk_tokens;
}

/* Loads the engine (every file validated), says where from and what it holds; with --text prints
 * the text front end's output. */
static int
run_model (const Options *o)
{
  CbEngineParams p;
  cb_engine_params_init (&p);
  p.model_location = o->model;
  p.threads = o->threads == UNSET_INT ? 0 : o->threads;
  p.precision = o->precision && !strcmp (o->precision, "bf16") ? CB_PRECISION_BF16
                                                                : CB_PRECISION_FP32;
  GError *err = NULL;
  CbEngine *e = cb_engine_new (&p, &err);
  if (!e) {
    fprintf (stderr, "chatterbox-cli: %s\n", err->message);
    g_error_free (err);
    return EXIT_CHECK_FAILED;
  }
  int status = EXIT_CHECK_FAILED;
  const char *dir = cb_engine_model_dir (e);
  CbConfig cfg;
  char *counts = NULL;
  if (!cli_model_config (dir, &cfg, &err) || !(counts = cli_model_tensor_counts (dir, &cfg, &err)))
    goto out;
  printf ("model: %s\n", dir);
  printf ("weights: %s tensors validated\n", counts);
  printf ("threads: %d\n", cb_engine_threads (e));
  if (o->output || o->speech_tokens) {
    CliAudioRequest r = { .text = o->text, .speech_tokens = o->speech_tokens, .noise = o->noise,
                          .voice = o->voice, .dump = o->dump, .output = o->output,
                          .max_tokens_set = o->max_tokens != UNSET_INT };
    utterance_params (o, &r.params);
    if (!cli_audio_run (e, &r, stdout, &err))
      goto out;
  } else if (o->text) {
    CliT3Request r = { .text = o->text, .voice = o->voice, .force_tokens = o->force_tokens,
                       .dump = o->dump, .max_tokens_set = o->max_tokens != UNSET_INT };
    utterance_params (o, &r.params);
    if (!cli_t3_run (e, &r, stdout, &err))
      goto out;
  }
  status = EXIT_SUCCESS;
out:
  if (err) {
    fprintf (stderr, "chatterbox-cli: %s\n", err->message);
    g_error_free (err);
  }
  g_free (counts);
  cb_engine_free (e);
  return status;
}

int
main (int argc, char **argv)
{
  Options o = { .max_tokens = UNSET_INT, .threads = UNSET_INT, .chunk_tokens = UNSET_INT, .cfg_weight = UNSET_DOUBLE,
                .temperature = UNSET_DOUBLE, .exaggeration = UNSET_DOUBLE, .min_p = UNSET_DOUBLE,
                .top_p = UNSET_DOUBLE, .repetition_penalty = UNSET_DOUBLE };
  const GOptionEntry entries[] = {
    { "model", 0, 0, G_OPTION_ARG_FILENAME, &o.model,
      "Model directory (default: $CHATTERBOX_MODEL_DIR, then the Hugging Face cache)", "DIR" },
    /* Taken as raw bytes (FILENAME), not converted from the locale; checked as UTF-8 later. */
    { "text", 0, 0, G_OPTION_ARG_FILENAME, &o.text,
      "Text to speak (for now: prints the normalised text, its token ids and T3's speech tokens)",
      "TEXT" },
    { "voice", 0, 0, G_OPTION_ARG_FILENAME, &o.voice, "Voice file (default: the model's conds.pt)", "FILE" },
    { "seed", 0, 0, G_OPTION_ARG_CALLBACK, (gpointer) parse_seed, "Sampling seed", "N" },
    { "max-tokens", 0, 0, G_OPTION_ARG_INT, &o.max_tokens, "Most speech tokens to generate", "N" },
    { "cfg-weight", 0, 0, G_OPTION_ARG_DOUBLE, &o.cfg_weight, "Classifier-free guidance weight", "X" },
    { "temperature", 0, 0, G_OPTION_ARG_DOUBLE, &o.temperature, "Sampling temperature", "X" },
    { "exaggeration", 0, 0, G_OPTION_ARG_DOUBLE, &o.exaggeration, "Emotion exaggeration (0.5)", "X" },
    { "min-p", 0, 0, G_OPTION_ARG_DOUBLE, &o.min_p, "Min-p filter (0.05)", "X" },
    { "top-p", 0, 0, G_OPTION_ARG_DOUBLE, &o.top_p, "Top-p filter (1.0)", "X" },
    { "repetition-penalty", 0, 0, G_OPTION_ARG_DOUBLE, &o.repetition_penalty,
      "Repetition penalty (1.2)", "X" },
    { "alignment-guard", 0, 0, G_OPTION_ARG_NONE, &o.alignment_guard,
      "Run the alignment-stream guard (the model config's t3_guard group)", NULL },
    { "precision", 0, 0, G_OPTION_ARG_STRING, &o.precision, "Weight precision of T3 and the S3Gen estimator: fp32 or bf16", "fp32|bf16" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &o.threads, "CPU threads (0: all)", "N" },
    { "force-tokens", 0, 0, G_OPTION_ARG_FILENAME, &o.force_tokens,
      "Teacher-force these speech tokens (safetensors, I64/I32 tensor \"tokens\")", "FILE" },
    { "dump", 0, 0, G_OPTION_ARG_FILENAME, &o.dump,
      "Write conditioning embeddings and per-step logits (every stage) to DIR/t3.safetensors", "DIR" },
    { "check-golden", 0, 0, G_OPTION_ARG_FILENAME, &o.check_golden,
      "Compare every stage with a golden directory (tests/reference/make_golden.py)", "DIR" },
    { "strict", 0, 0, G_OPTION_ARG_NONE, &o.strict,
      "With --check-golden: stages not implemented yet make the exit status 2", NULL },
    { "output", 0, 0, G_OPTION_ARG_FILENAME, &o.output, "Write the audio as a WAV file (16-bit, 24 kHz mono)", "FILE.wav" },
    { "speech-tokens", 0, 0, G_OPTION_ARG_FILENAME, &o.speech_tokens,
      "Skip T3: decode the speech tokens in FILE (safetensors, I64/I32 \"tokens\" or \"input.tokens\") with S3Gen + HiFT", "FILE" },
    { "noise", 0, 0, G_OPTION_ARG_FILENAME, &o.noise,
      "With --speech-tokens: CFM start noise and HiFT source randomness from FILE (safetensors: noise.z, rand.sine_phase, rand.sine_noise)", "FILE" },
    { "chunk-tokens", 0, 0, G_OPTION_ARG_INT, &o.chunk_tokens, "Speech tokens of the first audio chunk (25)", "N" },
    { NULL }
  };
  GOptionContext *ctx = g_option_context_new ("- the Chatterbox TTS engine from the command line");
  GOptionGroup *group = g_option_group_new ("main", "", "", &o, NULL);
  g_option_group_add_entries (group, entries);
  g_option_context_set_main_group (ctx, group);
  g_option_context_set_description (ctx,
      "Exit status: 0 success, 1 a failed check or a model that does not load, 2 a feature that is "
      "not implemented yet, 64 a usage error.");
  GError *err = NULL;
  int status;
  char *problem = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &err)) {
    fprintf (stderr, "chatterbox-cli: %s (see --help)\n", err->message);
    g_error_free (err);
    status = EXIT_USAGE;
  } else if (argc > 1) {
    fprintf (stderr, "chatterbox-cli: unexpected argument '%s' (see --help)\n", argv[1]);
    status = EXIT_USAGE;
  } else if ((problem = usage_problem (&o))) {
    fprintf (stderr, "chatterbox-cli: %s\n", problem);
    status = EXIT_USAGE;
  } else if (o.check_golden) {
    status = run_check_golden (&o);
  } else {
    status = run_model (&o);
  }
  g_free (problem);
  g_option_context_free (ctx);
  options_clear (&o);
  return status;
}
