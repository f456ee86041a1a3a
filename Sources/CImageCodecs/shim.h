// libpng (libpng-dev) and libjpeg-turbo (libjpeg62-turbo-dev).
#include <stdio.h>
#include <png.h>
#include <jpeglib.h>
