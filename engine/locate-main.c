/* chatterbox-locate — print the directory the element would load the model from, or the
 * not-found report (every place searched, how to download) and exit 1. Used by scripts/run.sh to
 * decide whether to download, and by the download test. */
#include <stdio.h>

#include "model-dir.h"

int
main (int argc, char **argv)
{
  GError *err = NULL;
  char *dir = cb_model_dir_locate (argc > 1 ? argv[1] : NULL, &err);
  if (!dir) {
    fprintf (stderr, "%s\n", err->message);
    g_error_free (err);
    return 1;
  }
  printf ("%s\n", dir);
  g_free (dir);
  return 0;
}
