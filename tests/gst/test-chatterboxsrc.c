/* Element tests for chatterboxsrc (gst-check; linked against gstreamer-check only). */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "model-fixture.h"

/* A harness around a chatterboxsrc configured before the harness sees it; `with_sink` also links
 * its text sink pad to the harness; `bus` (may be NULL) is set on the element first. */
static GstHarness *
harness_for (gboolean with_sink, GstBus *bus, const gchar *first_prop, ...)
{
  GstElement *el = gst_element_factory_make ("chatterboxsrc", NULL);
  if (bus)  /* before the harness takes the element to READY, which acquires the engine */
    gst_element_set_bus (el, bus);
  va_list ap;
  va_start (ap, first_prop);
  g_object_set_valist (G_OBJECT (el), first_prop, ap);
  va_end (ap);
  GstHarness *h = gst_harness_new_with_element (el, with_sink ? "sink" : NULL, "src");
  gst_object_unref (el);
  return h;
}

/* Pulls buffers and events until EOS: samples received (bytes_per_sample 4 for F32LE, 2 for S16LE),
 * buffers and GAP events counted; every buffer's offset and (non-live) PTS continue the sample
 * count. pcm: NULL, or receives the F32 samples. */
static guint64
pull_until_eos (GstHarness *h, gsize bytes_per_sample, guint *n_buffers, guint *n_gaps, GArray *pcm)
{
  guint64 samples = 0;
  *n_buffers = 0;
  if (n_gaps)
    *n_gaps = 0;
  gboolean eos = FALSE;
  for (;;) {
    GstEvent *ev;
    /* buffers and events wait in separate queues: once EOS is seen, every buffer is queued */
    while (!eos && (ev = gst_harness_try_pull_event (h))) {
      eos = GST_EVENT_TYPE (ev) == GST_EVENT_EOS;
      if (GST_EVENT_TYPE (ev) == GST_EVENT_GAP && n_gaps)
        (*n_gaps)++;
      gst_event_unref (ev);
    }
    GstBuffer *buf = gst_harness_try_pull (h);
    if (!buf) {
      if (eos)
        return samples;
      g_usleep (5000);
      continue;
    }
    const gsize n = gst_buffer_get_size (buf) / bytes_per_sample;
    fail_unless (n > 0 && gst_buffer_get_size (buf) % bytes_per_sample == 0);
    fail_unless_equals_uint64 (GST_BUFFER_OFFSET (buf), samples);
    fail_unless_equals_uint64 (GST_BUFFER_PTS (buf),
                               gst_util_uint64_scale_int (samples, GST_SECOND, 24000));
    if (pcm) {
      GstMapInfo map;
      gst_buffer_map (buf, &map, GST_MAP_READ);
      g_array_append_vals (pcm, map.data, (guint) n);
      gst_buffer_unmap (buf, &map);
    }
    samples += n;
    (*n_buffers)++;
    gst_buffer_unref (buf);
  }
}

GST_START_TEST (test_properties)
{
  GstElement *el = gst_element_factory_make ("chatterboxsrc", NULL);
  fail_unless (el != NULL);
  gchar *text, *loc;
  gint threads;
  g_object_get (el, "text", &text, "model-location", &loc, "threads", &threads, NULL);
  fail_unless (text == NULL && loc == NULL && threads == 0);
  g_object_set (el, "text", "Hello.", "threads", 2, NULL);
  g_object_get (el, "text", &text, "threads", &threads, NULL);
  fail_unless_equals_string (text, "Hello.");
  fail_unless_equals_int (threads, 2);
  g_free (text);
  GstPad *pad = gst_element_get_static_pad (el, "src");
  GstCaps *caps = gst_pad_query_caps (pad, NULL);
  GstStructure *s = gst_caps_get_structure (caps, 0);
  gint rate, channels;
  fail_unless (gst_structure_get_int (s, "rate", &rate) && rate == 24000);
  fail_unless (gst_structure_get_int (s, "channels", &channels) && channels == 1);
  gst_caps_unref (caps);
  gst_object_unref (pad);
  gst_object_unref (el);
}
GST_END_TEST;

GST_START_TEST (test_missing_model_fails_ready)
{
  GstElement *el = gst_element_factory_make ("chatterboxsrc", NULL);
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (el, bus);
  g_object_set (el, "model-location", "/nonexistent/chatterbox-model", NULL);
  fail_unless_equals_int (gst_element_set_state (el, GST_STATE_READY), GST_STATE_CHANGE_FAILURE);

  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL);
  GError *err = NULL;
  gchar *dbg = NULL;
  gst_message_parse_error (msg, &err, &dbg);
  fail_unless (g_error_matches (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND));
  fail_unless (strstr (dbg, "/nonexistent/chatterbox-model") != NULL, "%s", dbg);
  fail_unless (strstr (dbg, "fetch-model.py") != NULL, "%s", dbg);
  g_error_free (err);
  g_free (dbg);
  gst_message_unref (msg);

  gst_element_set_state (el, GST_STATE_NULL);
  gst_element_set_bus (el, NULL);
  gst_object_unref (bus);
  gst_object_unref (el);
}
GST_END_TEST;

GST_START_TEST (test_empty_text_warns_and_eos)
{
  gchar *dir = cb_test_make_model_dir ();
  GstHarness *h = harness_for (FALSE, NULL, "model-location", dir, "text", "  \t ", NULL);
  gst_harness_play (h);
  /* No audio; the stream ends with EOS after a warning. */
  GstEvent *ev;
  gboolean eos = FALSE;
  while (!eos && (ev = gst_harness_pull_event (h))) {
    eos = GST_EVENT_TYPE (ev) == GST_EVENT_EOS;
    gst_event_unref (ev);
  }
  fail_unless (eos);
  fail_unless_equals_int (gst_harness_buffers_received (h), 0);
  gst_harness_teardown (h);
  g_free (dir);
}
GST_END_TEST;

/* With a valid model and real text the element speaks: timestamped F32LE buffers whose samples
 * join without gaps, then EOS. */
GST_START_TEST (test_text_is_spoken)
{
  gchar *dir = cb_test_make_model_dir ();
  GstHarness *h = harness_for (FALSE, NULL, "model-location", dir, "text", "Hello there.", "threads", 1, NULL);
  gst_harness_play (h);
  guint n_buffers;
  guint64 samples = pull_until_eos (h, 4, &n_buffers, NULL, NULL);
  GST_INFO ("%u buffers, %" G_GUINT64_FORMAT " samples", n_buffers, samples);
  fail_unless (n_buffers >= 1);
  fail_unless (samples % 960 == 0, "%" G_GUINT64_FORMAT " samples is not a whole number of tokens",
               samples);
  gst_harness_teardown (h);
  g_free (dir);
}
GST_END_TEST;



/* Element messages named `name` on the bus, in order (the structures are copies: free them). */
static GPtrArray *
element_messages (GstBus *bus, const gchar *name)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) gst_structure_free);
  GstMessage *msg;
  while ((msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT))) {
    const GstStructure *st = gst_message_get_structure (msg);
    if (st && gst_structure_has_name (st, name))
      g_ptr_array_add (out, gst_structure_copy (st));
    gst_message_unref (msg);
  }
  return out;
}

/* Text through the sink pad: each sentence is an utterance as soon as it is complete (a sentence
 * split across buffers included), spoken in order; upstream EOS ends the stream after the queue. */
GST_START_TEST (test_sink_pad_sentences)
{
  gchar *dir = cb_test_make_model_dir ();
  GstBus *bus = gst_bus_new ();
  GstHarness *h = harness_for (TRUE, bus, "model-location", dir, "threads", 1, "max-tokens", 20,
                               "flush-timeout", (guint64) 0, NULL);
  gst_harness_set_src_caps_str (h, "text/x-raw, format=utf8");
  gst_harness_play (h);
  const gchar *parts[] = { "Hello ", "there. How are", " you today?", " Fine" };
  for (guint i = 0; i < G_N_ELEMENTS (parts); i++)
    fail_unless_equals_int (gst_harness_push (h, gst_buffer_new_memdup (parts[i], strlen (parts[i]))),
                            GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  guint n_buffers;
  guint64 samples = pull_until_eos (h, 4, &n_buffers, NULL, NULL);
  GPtrArray *stats = element_messages (bus, "chatterbox-stats");
  fail_unless_equals_int (stats->len, 3);
  /* "Hello there.", "How are you today?", "Fine" (characters of the text as segmented) */
  const guint chars[] = { 12, 18, 4 };
  guint64 total = 0;
  for (guint i = 0; i < stats->len; i++) {
    guint c, u;
    gdouble secs;
    guint64 setup;
    fail_unless (gst_structure_get_uint (g_ptr_array_index (stats, i), "text-chars", &c));
    fail_unless (gst_structure_get_uint (g_ptr_array_index (stats, i), "utterance", &u));
    fail_unless (gst_structure_get_double (g_ptr_array_index (stats, i), "audio-seconds", &secs));
    fail_unless (gst_structure_get_uint64 (g_ptr_array_index (stats, i), "setup-time", &setup));
    fail_unless_equals_int (c, chars[i]);
    fail_unless_equals_int (u, i + 1);
    total += (guint64) llround (secs * 24000);
  }
  fail_unless_equals_uint64 (total, samples);
  g_ptr_array_unref (stats);
  gst_harness_teardown (h);
  gst_object_unref (bus);
  g_free (dir);
}
GST_END_TEST;

/* An unfinished sentence is spoken once flush-timeout passes without new text. */
GST_START_TEST (test_flush_timeout)
{
  gchar *dir = cb_test_make_model_dir ();
  GstHarness *h = harness_for (TRUE, NULL, "model-location", dir, "threads", 1, "max-tokens", 10,
                               "flush-timeout", (guint64) (200 * GST_MSECOND), NULL);
  gst_harness_set_src_caps_str (h, "text/x-raw, format=utf8");
  gst_harness_play (h);
  fail_unless_equals_int (gst_harness_push (h, gst_buffer_new_memdup ("no full stop", 12)), GST_FLOW_OK);
  /* audio arrives without EOS upstream */
  GstBuffer *buf = gst_harness_pull (h);
  fail_unless (buf != NULL);
  gst_buffer_unref (buf);
  gst_harness_teardown (h);
  g_free (dir);
}
GST_END_TEST;

/* S16LE when downstream asks for it; the engine is acquired once over three streams (READY →
 * PLAYING → EOS → READY), shared by a second element, and `recompile` rebuilds it exactly once,
 * before the next utterance. */
GST_START_TEST (test_s16_engine_reuse_recompile)
{
  gchar *dir = cb_test_make_model_dir ();
  GstBus *bus = gst_bus_new ();
  GstHarness *h = harness_for (FALSE, bus, "model-location", dir, "text", "Hello there.", "threads", 1,
                               "max-tokens", 10, NULL);
  gst_harness_set_sink_caps_str (h, "audio/x-raw, format=S16LE, rate=24000, channels=1, layout=interleaved");
  guint n_buffers;
  for (int stream = 0; stream < 3; stream++) {
    gst_harness_play (h);
    fail_unless (pull_until_eos (h, 2, &n_buffers, NULL, NULL) > 0);
    gst_element_set_state (h->element, GST_STATE_READY);
  }
  GPtrArray *engines = element_messages (bus, "chatterbox-engine");
  fail_unless_equals_int (engines->len, 1);
  gboolean built;
  fail_unless (gst_structure_get_boolean (g_ptr_array_index (engines, 0), "built", &built) && built);
  g_ptr_array_unref (engines);

  GstElement *other = gst_element_factory_make ("chatterboxsrc", NULL);
  gst_element_set_bus (other, bus);
  g_object_set (other, "model-location", dir, "threads", 1, NULL);
  fail_unless_equals_int (gst_element_set_state (other, GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
  engines = element_messages (bus, "chatterbox-engine");
  fail_unless_equals_int (engines->len, 1);
  fail_unless (gst_structure_get_boolean (g_ptr_array_index (engines, 0), "built", &built) && !built);
  g_ptr_array_unref (engines);

  g_signal_emit_by_name (h->element, "recompile");
  engines = element_messages (bus, "chatterbox-engine");
  fail_unless_equals_int (engines->len, 0);  /* not before the next utterance */
  g_ptr_array_unref (engines);
  gst_harness_play (h);
  fail_unless (pull_until_eos (h, 2, &n_buffers, NULL, NULL) > 0);
  engines = element_messages (bus, "chatterbox-engine");
  fail_unless_equals_int (engines->len, 1);
  guint builds;
  fail_unless (gst_structure_get_boolean (g_ptr_array_index (engines, 0), "built", &built) && built);
  fail_unless (gst_structure_get_uint (g_ptr_array_index (engines, 0), "builds-in-process", &builds));
  fail_unless_equals_int (builds, 2);
  g_ptr_array_unref (engines);

  gst_element_set_state (other, GST_STATE_NULL);
  gst_element_set_bus (other, NULL);
  gst_object_unref (other);
  gst_harness_teardown (h);
  gst_object_unref (bus);
  g_free (dir);
}
GST_END_TEST;

/* Live: GAP events while waiting for text; the LATENCY query says live. */
GST_START_TEST (test_live_gaps_and_latency)
{
  gchar *dir = cb_test_make_model_dir ();
  GstHarness *h = harness_for (TRUE, NULL, "model-location", dir, "threads", 1, "is-live", TRUE,
                               "max-tokens", 10, NULL);
  gst_harness_use_systemclock (h);
  gst_harness_set_src_caps_str (h, "text/x-raw, format=utf8");
  gst_harness_play (h);
  g_usleep (400000);
  guint gaps = 0;
  GstEvent *ev;
  while ((ev = gst_harness_try_pull_event (h))) {
    gaps += GST_EVENT_TYPE (ev) == GST_EVENT_GAP;
    gst_event_unref (ev);
  }
  fail_unless (gaps >= 1, "no GAP event while waiting for text");
  GstQuery *q = gst_query_new_latency ();
  fail_unless (gst_element_query (h->element, q));
  gboolean live;
  GstClockTime min_latency;
  gst_query_parse_latency (q, &live, &min_latency, NULL);
  fail_unless (live);
  fail_unless (min_latency > 0, "no warm-up latency");  /* measured at start, before any text */
  gst_query_unref (q);
  fail_unless_equals_int (gst_harness_push (h, gst_buffer_new_memdup ("Hi there.\n", 10)), GST_FLOW_OK);
  GstBuffer *buf = gst_harness_pull (h);
  fail_unless (buf != NULL && GST_BUFFER_PTS_IS_VALID (buf));
  gst_buffer_unref (buf);
  gst_harness_teardown (h);
  g_free (dir);
}
GST_END_TEST;

/* Long text in the property is segmented like the text pad's: sentences of at most ~300
 * characters, each its own utterance, in order. */
GST_START_TEST (test_long_text_property)
{
  /* the golden small model: the tiny test model takes only 64 text tokens per utterance */
  gchar *dir = g_build_filename (g_getenv ("CB_TEST_DATA"), "golden", "model", NULL);
  GString *text = g_string_new ("First sentence. Second one! ");
  for (int i = 0; i < 90; i++)
    g_string_append (text, "word ");
  g_string_append (text, "end.");
  GstBus *bus = gst_bus_new ();
  GstHarness *h = harness_for (FALSE, bus, "model-location", dir, "text", text->str, "threads", 1,
                               "max-tokens", 5, NULL);
  gst_harness_play (h);
  guint n_buffers;
  pull_until_eos (h, 4, &n_buffers, NULL, NULL);
  GPtrArray *stats = element_messages (bus, "chatterbox-stats");
  fail_unless (stats->len >= 4, "%u utterances", stats->len);
  guint c;
  fail_unless (gst_structure_get_uint (g_ptr_array_index (stats, 0), "text-chars", &c) && c == 15);
  for (guint i = 0; i < stats->len; i++)
    fail_unless (gst_structure_get_uint (g_ptr_array_index (stats, i), "text-chars", &c) && c <= 300);
  g_ptr_array_unref (stats);
  g_string_free (text, TRUE);
  gst_harness_teardown (h);
  gst_object_unref (bus);
  g_free (dir);
}
GST_END_TEST;

/* NULL ↔ READY ↔ PAUSED ↔ PLAYING in many orders, repeated, with an utterance in flight. */
GST_START_TEST (test_state_changes)
{
  gchar *dir = cb_test_make_model_dir ();
  GstHarness *h = harness_for (FALSE, NULL, "model-location", dir, "text", "Hello there.", "threads", 1,
                               "max-tokens", 30, NULL);
  const GstState order[] = { GST_STATE_READY, GST_STATE_PAUSED, GST_STATE_PLAYING, GST_STATE_PAUSED,
                             GST_STATE_READY, GST_STATE_PLAYING, GST_STATE_NULL, GST_STATE_PLAYING,
                             GST_STATE_READY, GST_STATE_NULL, GST_STATE_PAUSED, GST_STATE_NULL };
  for (int rep = 0; rep < 2; rep++)
    for (guint i = 0; i < G_N_ELEMENTS (order); i++) {
      fail_if (gst_element_set_state (h->element, order[i]) == GST_STATE_CHANGE_FAILURE);
      fail_if (gst_element_get_state (h->element, NULL, NULL, 30 * GST_SECOND) == GST_STATE_CHANGE_FAILURE);
      g_usleep (20000);
      GstBuffer *b;
      while ((b = gst_harness_try_pull (h)))
        gst_buffer_unref (b);
    }
  gst_harness_teardown (h);
  g_free (dir);
}
GST_END_TEST;

/* A voice file that does not load and a damaged weights file are element errors naming the file. */
GST_START_TEST (test_bad_files_are_element_errors)
{
  gchar *dir = cb_test_make_model_dir ();
  GstBus *bus = gst_bus_new ();
  GstHarness *h = harness_for (FALSE, bus, "model-location", dir, "text", "Hello.", "threads", 1,
                               "voice", "/nonexistent/voice.pt", NULL);
  gst_harness_play (h);
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, 20 * GST_SECOND, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL);
  GError *err = NULL;
  gchar *dbg = NULL;
  gst_message_parse_error (msg, &err, &dbg);
  fail_unless (err->domain == GST_RESOURCE_ERROR, "%s (%s)", err->message, dbg);
  fail_unless (strstr (dbg, "/nonexistent/voice.pt") != NULL, "%s", dbg);
  g_error_free (err);
  g_free (dbg);
  gst_message_unref (msg);
  gst_harness_teardown (h);
  gst_bus_set_flushing (bus, TRUE);  /* drop basesrc's follow-up stream error */
  gst_bus_set_flushing (bus, FALSE);

  /* cut t3_cfg.safetensors short */
  gchar *t3 = g_build_filename (dir, "t3_cfg.safetensors", NULL);
  gchar *bytes;
  gsize len;
  fail_unless (g_file_get_contents (t3, &bytes, &len, NULL));
  fail_unless (g_file_set_contents (t3, bytes, len / 2, NULL));
  g_free (bytes);
  GstElement *el = gst_element_factory_make ("chatterboxsrc", NULL);
  gst_element_set_bus (el, bus);
  g_object_set (el, "model-location", dir, NULL);
  fail_unless_equals_int (gst_element_set_state (el, GST_STATE_READY), GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL);
  gst_message_parse_error (msg, &err, &dbg);
  fail_unless (g_error_matches (err, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ), "%s", err->message);
  fail_unless (strstr (dbg, "t3_cfg.safetensors") != NULL, "%s", dbg);
  g_error_free (err);
  g_free (dbg);
  gst_message_unref (msg);
  gst_element_set_state (el, GST_STATE_NULL);
  gst_element_set_bus (el, NULL);
  gst_object_unref (el);
  gst_object_unref (bus);
  g_free (t3);
  g_free (dir);
}
GST_END_TEST;

/* Text pad: a UTF-8 character split across buffers is reassembled; invalid bytes give a warning
 * and the rest is still spoken; an empty buffer is harmless. */
GST_START_TEST (test_sink_pad_utf8)
{
  gchar *dir = cb_test_make_model_dir ();
  GstBus *bus = gst_bus_new ();
  GstHarness *h = harness_for (TRUE, bus, "model-location", dir, "threads", 1, "max-tokens", 5,
                               "flush-timeout", (guint64) 0, NULL);
  gst_harness_set_src_caps_str (h, "text/x-raw, format=utf8");
  gst_harness_play (h);
  const gchar *parts[] = { "Caf\xc3", "\xa9 open. Bad \xff byte", "", " here.\n" };
  for (guint i = 0; i < G_N_ELEMENTS (parts); i++)
    fail_unless_equals_int (gst_harness_push (h, *parts[i] ? gst_buffer_new_memdup (parts[i], strlen (parts[i]))
                                                           : gst_buffer_new ()), GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  guint n_buffers;
  pull_until_eos (h, 4, &n_buffers, NULL, NULL);
  /* popping a type drops the other messages before it: the warning first, then the stats */
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL, "no warning for the invalid byte");
  gst_message_unref (msg);
  GPtrArray *stats = element_messages (bus, "chatterbox-stats");
  fail_unless_equals_int (stats->len, 2);
  guint c;
  fail_unless (gst_structure_get_uint (g_ptr_array_index (stats, 0), "text-chars", &c));
  fail_unless_equals_int (c, 10);  /* "Café open." */
  g_ptr_array_unref (stats);
  gst_harness_teardown (h);
  gst_object_unref (bus);
  g_free (dir);
}
GST_END_TEST;

/* The golden small model ends "Hello." by sampling its stop token (not by max-tokens): the stats
 * say so and the audio is exactly 40 ms per speech token. */
GST_START_TEST (test_t3_ends_by_eos)
{
  gchar *dir = g_build_filename (g_getenv ("CB_TEST_DATA"), "golden", "model", NULL);
  GstBus *bus = gst_bus_new ();
  GstHarness *h = harness_for (FALSE, bus, "model-location", dir, "text", "Hello.", "threads", 1,
                               "max-tokens", 300, "seed", (gint64) 5, NULL);
  gst_harness_play (h);
  guint n_buffers;
  guint64 samples = pull_until_eos (h, 4, &n_buffers, NULL, NULL);
  GPtrArray *stats = element_messages (bus, "chatterbox-stats");
  fail_unless_equals_int (stats->len, 1);
  guint tokens;
  fail_unless (gst_structure_get_uint (g_ptr_array_index (stats, 0), "speech-tokens", &tokens));
  fail_unless (tokens > 0 && tokens < 299, "%u speech tokens: not ended by T3's stop token", tokens);
  fail_unless_equals_uint64 (samples, (guint64) tokens * 960);
  g_ptr_array_unref (stats);
  gst_harness_teardown (h);
  gst_object_unref (bus);
  g_free (dir);
}
GST_END_TEST;

/* Two elements sharing one engine synthesise at the same time, each to its own complete stream. */
GST_START_TEST (test_two_elements_at_once)
{
  gchar *dir = cb_test_make_model_dir ();
  GstBus *bus = gst_bus_new ();
  GstHarness *a = harness_for (FALSE, bus, "model-location", dir, "text", "First voice speaking.",
                               "threads", 1, "max-tokens", 40, NULL);
  GstHarness *b = harness_for (FALSE, bus, "model-location", dir, "text", "Second one, at once.",
                               "threads", 1, "max-tokens", 40, "seed", (gint64) 9, NULL);
  gst_harness_play (a);
  gst_harness_play (b);
  guint na, nb;
  guint64 sa = pull_until_eos (a, 4, &na, NULL, NULL), sb = pull_until_eos (b, 4, &nb, NULL, NULL);
  GPtrArray *engines = element_messages (bus, "chatterbox-engine");
  fail_unless_equals_int (engines->len, 2);  /* one built, one shared */
  gboolean built0, built1;
  fail_unless (gst_structure_get_boolean (g_ptr_array_index (engines, 0), "built", &built0));
  fail_unless (gst_structure_get_boolean (g_ptr_array_index (engines, 1), "built", &built1));
  fail_unless (built0 && !built1);
  g_ptr_array_unref (engines);
  fail_unless (sa > 0 && sb > 0);
  fail_unless (sa % 960 == 0 && sb % 960 == 0);
  gst_harness_teardown (a);
  gst_harness_teardown (b);
  gst_object_unref (bus);
  g_free (dir);
}
GST_END_TEST;

/* Sentences follow each other without a click: the last sample of one utterance and the first of
 * the next are (near) silence. */
GST_START_TEST (test_sentence_joins_are_silent)
{
  gchar *dir = cb_test_make_model_dir ();
  GstBus *bus = gst_bus_new ();
  GstHarness *h = harness_for (FALSE, bus, "model-location", dir, "threads", 1, "max-tokens", 20,
                               "text", "One sentence here. Another one there.", NULL);
  gst_harness_play (h);
  GArray *pcm = g_array_new (FALSE, FALSE, sizeof (float));
  guint n_buffers;
  pull_until_eos (h, 4, &n_buffers, NULL, pcm);
  GPtrArray *stats = element_messages (bus, "chatterbox-stats");
  fail_unless_equals_int (stats->len, 2);
  gdouble secs;
  fail_unless (gst_structure_get_double (g_ptr_array_index (stats, 0), "audio-seconds", &secs));
  const gsize join = (gsize) llround (secs * 24000);
  fail_unless (join > 0 && join < pcm->len);
  const float *x = (const float *) pcm->data;
  float peak = 0;
  for (gsize i = 0; i < pcm->len; i++)
    peak = MAX (peak, fabsf (x[i]));
  fail_unless (peak > 0.01f, "silent output");
  fail_unless (fabsf (x[join - 1]) < 0.01f * peak && fabsf (x[join]) < 0.01f * peak,
               "join at %zu: %g then %g (peak %g)", join, x[join - 1], x[join], peak);
  g_ptr_array_unref (stats);
  g_array_unref (pcm);
  gst_harness_teardown (h);
  gst_object_unref (bus);
  g_free (dir);
}
GST_END_TEST;

/* A 20,000-character buffer without a sentence end is cut into pieces of at most 300 characters,
 * all spoken in order; the stream reaches EOS. (Golden model: 2048 text tokens per utterance.) */
GST_START_TEST (test_huge_text_buffer)
{
  gchar *dir = g_build_filename (g_getenv ("CB_TEST_DATA"), "golden", "model", NULL);
  GstBus *bus = gst_bus_new ();
  GstHarness *h = harness_for (TRUE, bus, "model-location", dir, "threads", 1, "max-tokens", 1,
                               "flush-timeout", (guint64) 0, NULL);
  gst_harness_set_src_caps_str (h, "text/x-raw, format=utf8");
  gst_harness_play (h);
  GString *big = g_string_new (NULL);
  while (big->len < 20000)
    g_string_append (big, "lorem ipsum dolor ");
  g_string_truncate (big, 20000);
  fail_unless_equals_int (gst_harness_push (h, gst_buffer_new_memdup (big->str, big->len)), GST_FLOW_OK);
  fail_unless (gst_harness_push_event (h, gst_event_new_eos ()));
  guint n_buffers;
  pull_until_eos (h, 4, &n_buffers, NULL, NULL);
  GPtrArray *stats = element_messages (bus, "chatterbox-stats");
  fail_unless (stats->len >= 20000 / 300, "%u utterances", stats->len);
  guint64 chars = 0;
  for (guint i = 0; i < stats->len; i++) {
    guint c;
    fail_unless (gst_structure_get_uint (g_ptr_array_index (stats, i), "text-chars", &c) && c <= 300);
    chars += c;
  }
  /* every word spoken: the pieces cover the text but its spaces between pieces */
  fail_unless (chars + stats->len >= 19990 && chars <= 20000, "%" G_GUINT64_FORMAT " characters", chars);
  g_ptr_array_unref (stats);
  g_string_free (big, TRUE);
  gst_harness_teardown (h);
  gst_object_unref (bus);
  g_free (dir);
}
GST_END_TEST;

static Suite *
chatterboxsrc_suite (void)
{
  Suite *s = suite_create ("chatterboxsrc");
  TCase *tc = tcase_create ("general");
  tcase_set_timeout (tc, 600);  /* the ASan build is several times slower */
  tcase_add_test (tc, test_properties);
  tcase_add_test (tc, test_missing_model_fails_ready);
  tcase_add_test (tc, test_empty_text_warns_and_eos);
  tcase_add_test (tc, test_text_is_spoken);
  tcase_add_test (tc, test_sink_pad_sentences);
  tcase_add_test (tc, test_flush_timeout);
  tcase_add_test (tc, test_s16_engine_reuse_recompile);
  tcase_add_test (tc, test_live_gaps_and_latency);
  tcase_add_test (tc, test_long_text_property);
  tcase_add_test (tc, test_state_changes);
  tcase_add_test (tc, test_bad_files_are_element_errors);
  tcase_add_test (tc, test_sink_pad_utf8);
  tcase_add_test (tc, test_t3_ends_by_eos);
  tcase_add_test (tc, test_two_elements_at_once);
  tcase_add_test (tc, test_sentence_joins_are_silent);
  tcase_add_test (tc, test_huge_text_buffer);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (chatterboxsrc);
