/* plugin.c — registers the chatterbox plugin's elements. */
#include "gstchatterboxsrc.h"

static gboolean
plugin_init (GstPlugin *plugin)
{
  return GST_ELEMENT_REGISTER (chatterboxsrc, plugin);
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, chatterbox,
                   "Chatterbox text-to-speech (Resemble AI), native CPU/CUDA inference",
                   plugin_init, PACKAGE_VERSION, "MIT", "chatterboxsrc",
                   "https://github.com/resemble-ai/chatterbox")
