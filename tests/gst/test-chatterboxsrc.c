/* Element tests for chatterboxsrc (gst-check; linked against gstreamer-check only). */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <glib/gstdio.h>
#include <string.h>

#include "model-fixture.h"

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
  GstHarness *h = gst_harness_new ("chatterboxsrc");
  g_object_set (h->element, "model-location", dir, "text", "  \t ", NULL);
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
  GstHarness *h = gst_harness_new ("chatterboxsrc");
  g_object_set (h->element, "model-location", dir, "text", "Hello there.", "threads", 1, NULL);
  gst_harness_play (h);
  guint64 samples = 0;
  guint n_buffers = 0;
  for (;;) {
    GstEvent *ev;
    while ((ev = gst_harness_try_pull_event (h))) {
      gboolean eos = GST_EVENT_TYPE (ev) == GST_EVENT_EOS;
      gst_event_unref (ev);
      if (eos)
        goto out;
    }
    GstBuffer *buf = gst_harness_try_pull (h);
    if (!buf) {
      g_usleep (10000);
      continue;
    }
    const gsize n = gst_buffer_get_size (buf) / 4;
    fail_unless (n > 0);
    fail_unless_equals_uint64 (GST_BUFFER_OFFSET (buf), samples);
    fail_unless_equals_uint64 (GST_BUFFER_PTS (buf),
                               gst_util_uint64_scale_int (samples, GST_SECOND, 24000));
    samples += n;
    n_buffers++;
    gst_buffer_unref (buf);
  }
out:
  GST_INFO ("%u buffers, %" G_GUINT64_FORMAT " samples", n_buffers, samples);
  fail_unless (n_buffers >= 1);
  fail_unless (samples % 960 == 0, "%" G_GUINT64_FORMAT " samples is not a whole number of tokens",
               samples);
  gst_harness_teardown (h);
  g_free (dir);
}
GST_END_TEST;

static Suite *
chatterboxsrc_suite (void)
{
  Suite *s = suite_create ("chatterboxsrc");
  TCase *tc = tcase_create ("general");
  tcase_add_test (tc, test_properties);
  tcase_add_test (tc, test_missing_model_fails_ready);
  tcase_add_test (tc, test_empty_text_warns_and_eos);
  tcase_add_test (tc, test_text_is_spoken);
  suite_add_tcase (s, tc);
  return s;
}

GST_CHECK_MAIN (chatterboxsrc);
