// libpng (libpng-dev) and libjpeg-turbo (libjpeg62-turbo-dev).
//
// Both libraries report fatal errors by longjmp (libpng) or through an `error_exit` callback that
// would call exit() (libjpeg). A longjmp must never cross Swift frames, so every libpng/libjpeg
// call that can fail happens inside one of the small `static inline` C helpers below, each of
// which owns its own setjmp and returns -1 with a message instead. Swift only calls the helpers and
// the non-failing getters (png_get_text).
#ifndef IPA_IMAGE_CODECS_SHIM_H
#define IPA_IMAGE_CODECS_SHIM_H

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <jpeglib.h>
#include <jerror.h>

// MARK: - PNG decoding

typedef struct ipa_png_reader {
  png_structp png;
  png_infop info;
  const unsigned char *data;
  size_t size;
  size_t pos;
  int truncated;        // the input ended before libpng had read what it needed
  int passes;           // interlace passes (1 or 7)
  size_t alloc_cap;     // largest single allocation libpng may make (see ipa_png_malloc)
  char message[256];
} ipa_png_reader;

/// Header and output layout after the decode transforms chosen by `ipa_png_begin`.
typedef struct ipa_png_header {
  uint32_t width;
  uint32_t height;
  int color_type;       // as stored in IHDR
  int source_bit_depth; // as stored in IHDR
  int interlaced;
  int has_trns;         // a tRNS chunk was expanded into an alpha channel
  int channels;         // output samples per pixel (1...4)
  int bit_depth;        // output bits per sample (8 or 16; 16 is big-endian)
  size_t rowbytes;
} ipa_png_header;

static inline void ipa_png_error_fn(png_structp png, png_const_charp msg) {
  ipa_png_reader *r = (ipa_png_reader *)png_get_error_ptr(png);
  if (r && r->message[0] == 0) snprintf(r->message, sizeof r->message, "%s", msg);
  png_longjmp(png, 1);
}

static inline void ipa_png_warning_fn(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

static inline void ipa_png_read_fn(png_structp png, png_bytep out, size_t n) {
  ipa_png_reader *r = (ipa_png_reader *)png_get_io_ptr(png);
  if (n > r->size - r->pos) {
    r->truncated = 1;
    png_error(png, "unexpected end of data");
  }
  memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

/// libpng's allocator. libpng 1.6 only *warns* when an ancillary chunk (iTXt, zTXt, …) declares a
/// length above `png_set_chunk_malloc_max` and then allocates it anyway, before reading a byte of
/// it; refusing here turns that into libpng's "out of memory" warning (the chunk is skipped) and
/// the truncated-input error that follows.
static inline png_voidp ipa_png_malloc(png_structp png, png_alloc_size_t size) {
  const ipa_png_reader *r = (const ipa_png_reader *)png_get_mem_ptr(png);
  if (r != NULL && size > r->alloc_cap) return NULL;
  return malloc(size);
}

static inline void ipa_png_free(png_structp png, png_voidp p) {
  (void)png;
  free(p);
}

/// Reads the header and sets up: palette -> RGB, gray 1/2/4-bit -> 8-bit (bit replication),
/// tRNS -> alpha channel, 16-bit kept (big-endian), Adam7 de-interlacing. No gamma handling.
static inline int ipa_png_begin(
    ipa_png_reader *r, const unsigned char *data, size_t size, ipa_png_header *h) {
  memset(r, 0, sizeof *r);
  memset(h, 0, sizeof *h);
  r->data = data;
  r->size = size;
  // Nothing libpng needs is bigger than two rows (at most PNG_USER_WIDTH_MAX = 10^6 pixels of
  // 8 bytes each) or one chunk of the input itself.
  r->alloc_cap = ((size_t)32 << 20) + size;
  r->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, r, ipa_png_error_fn, ipa_png_warning_fn,
                                    r, ipa_png_malloc, ipa_png_free);
  if (!r->png) {
    snprintf(r->message, sizeof r->message, "cannot create libpng read struct");
    return -1;
  }
  r->info = png_create_info_struct(r->png);
  if (!r->info) {
    snprintf(r->message, sizeof r->message, "cannot create libpng info struct");
    return -1;
  }
  if (setjmp(png_jmpbuf(r->png))) return -1;
  png_set_read_fn(r->png, r, ipa_png_read_fn);
  // An ancillary chunk can declare any length up to 2^31 and libpng allocates it before reading:
  // no chunk can be longer than the data itself, and none that we keep needs more than 8 MiB.
  png_set_chunk_malloc_max(r->png, size < (8u << 20) ? (png_alloc_size_t)size + 64 : (8u << 20));
  png_set_chunk_cache_max(r->png, 128);
  png_read_info(r->png, r->info);
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0, interlace = 0;
  png_get_IHDR(r->png, r->info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
  h->width = width;
  h->height = height;
  h->color_type = color_type;
  h->source_bit_depth = bit_depth;
  h->interlaced = interlace != PNG_INTERLACE_NONE;
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(r->png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(r->png);
  if (png_get_valid(r->png, r->info, PNG_INFO_tRNS)) {
    png_set_tRNS_to_alpha(r->png);
    h->has_trns = 1;
  }
  r->passes = png_set_interlace_handling(r->png);
  png_read_update_info(r->png, r->info);
  h->channels = png_get_channels(r->png, r->info);
  h->bit_depth = png_get_bit_depth(r->png, r->info);
  h->rowbytes = png_get_rowbytes(r->png, r->info);
  return 0;
}

/// Decodes all rows into `dst` (`height * rowbytes` bytes).
static inline int ipa_png_read_image(
    ipa_png_reader *r, unsigned char *dst, size_t rowbytes, uint32_t height) {
  if (setjmp(png_jmpbuf(r->png))) return -1;
  for (int pass = 0; pass < r->passes; pass++) {
    for (uint32_t y = 0; y < height; y++) png_read_row(r->png, dst + (size_t)y * rowbytes, NULL);
  }
  return 0;
}

/// Reads the rest of the file after the image data (text chunks there land in the same info
/// struct). A failure here does not affect the pixels already decoded.
static inline int ipa_png_read_end(ipa_png_reader *r) {
  if (setjmp(png_jmpbuf(r->png))) return -1;
  png_read_end(r->png, r->info);
  return 0;
}

static inline void ipa_png_reader_destroy(ipa_png_reader *r) {
  if (r->png) png_destroy_read_struct(&r->png, r->info ? &r->info : NULL, NULL);
  r->png = NULL;
  r->info = NULL;
}

// MARK: - PNG encoding

typedef struct ipa_png_writer {
  png_structp png;
  png_infop info;
  unsigned char *buffer;
  size_t size;
  size_t capacity;
  char message[256];
} ipa_png_writer;

/// One text chunk; `itxt` selects an uncompressed iTXt chunk (UTF-8) instead of tEXt (Latin-1).
typedef struct ipa_png_text {
  const char *key;
  const char *value;
  size_t value_length;
  int itxt;
} ipa_png_text;

static inline void ipa_png_write_error_fn(png_structp png, png_const_charp msg) {
  ipa_png_writer *w = (ipa_png_writer *)png_get_error_ptr(png);
  if (w && w->message[0] == 0) snprintf(w->message, sizeof w->message, "%s", msg);
  png_longjmp(png, 1);
}

static inline void ipa_png_write_fn(png_structp png, png_bytep data, size_t n) {
  ipa_png_writer *w = (ipa_png_writer *)png_get_io_ptr(png);
  if (n > w->capacity - w->size) {
    size_t capacity = w->capacity ? w->capacity : 65536;
    while (n > capacity - w->size) capacity *= 2;
    unsigned char *grown = (unsigned char *)realloc(w->buffer, capacity);
    if (!grown) png_error(png, "out of memory");
    w->buffer = grown;
    w->capacity = capacity;
  }
  memcpy(w->buffer + w->size, data, n);
  w->size += n;
}

static inline void ipa_png_flush_fn(png_structp png) { (void)png; }

/// Encodes 8-bit gray (1), gray+alpha (2), RGB (3) or RGBA (4) pixels into `w->buffer`.
/// The caller frees the buffer with `ipa_png_writer_destroy`, also after a failure.
static inline int ipa_png_encode(
    ipa_png_writer *w, const unsigned char *pixels, uint32_t width, uint32_t height, int channels,
    const ipa_png_text *texts, int text_count, int compression_level) {
  memset(w, 0, sizeof *w);
  int color_type;
  switch (channels) {
    case 1: color_type = PNG_COLOR_TYPE_GRAY; break;
    case 2: color_type = PNG_COLOR_TYPE_GRAY_ALPHA; break;
    case 3: color_type = PNG_COLOR_TYPE_RGB; break;
    case 4: color_type = PNG_COLOR_TYPE_RGB_ALPHA; break;
    default:
      snprintf(w->message, sizeof w->message, "unsupported channel count %d", channels);
      return -1;
  }
  png_textp chunks = NULL;
  if (text_count > 0) {
    chunks = (png_textp)calloc((size_t)text_count, sizeof(png_text));
    if (!chunks) {
      snprintf(w->message, sizeof w->message, "out of memory");
      return -1;
    }
    for (int i = 0; i < text_count; i++) {
      chunks[i].key = (png_charp)texts[i].key;
      chunks[i].text = (png_charp)texts[i].value;
      if (texts[i].itxt) {
        chunks[i].compression = PNG_ITXT_COMPRESSION_NONE;
        chunks[i].itxt_length = texts[i].value_length;
        chunks[i].lang = (png_charp) "";
        chunks[i].lang_key = (png_charp) "";
      } else {
        chunks[i].compression = PNG_TEXT_COMPRESSION_NONE;
        chunks[i].text_length = texts[i].value_length;
      }
    }
  }
  w->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, w, ipa_png_write_error_fn, ipa_png_warning_fn);
  if (!w->png) {
    free(chunks);
    snprintf(w->message, sizeof w->message, "cannot create libpng write struct");
    return -1;
  }
  w->info = png_create_info_struct(w->png);
  if (!w->info) {
    free(chunks);
    snprintf(w->message, sizeof w->message, "cannot create libpng info struct");
    return -1;
  }
  if (setjmp(png_jmpbuf(w->png))) {
    free(chunks);
    return -1;
  }
  png_set_write_fn(w->png, w, ipa_png_write_fn, ipa_png_flush_fn);
  png_set_compression_level(w->png, compression_level);
  png_set_IHDR(w->png, w->info, width, height, 8, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (text_count > 0) png_set_text(w->png, w->info, chunks, text_count);
  png_write_info(w->png, w->info);
  size_t stride = (size_t)width * (size_t)channels;
  for (uint32_t y = 0; y < height; y++) png_write_row(w->png, pixels + (size_t)y * stride);
  png_write_end(w->png, w->info);
  free(chunks);
  return 0;
}

static inline void ipa_png_writer_destroy(ipa_png_writer *w) {
  if (w->png) png_destroy_write_struct(&w->png, w->info ? &w->info : NULL);
  free(w->buffer);
  w->png = NULL;
  w->info = NULL;
  w->buffer = NULL;
  w->size = w->capacity = 0;
}

// MARK: - JPEG decoding

typedef struct ipa_jpeg_reader {
  struct jpeg_decompress_struct cinfo;
  struct jpeg_error_mgr err;
  struct jpeg_progress_mgr progress;
  int max_scans;        // more scans than this is an error (progressive-JPEG CPU exhaustion)
  jmp_buf jump;
  int created;
  int truncated;        // libjpeg hit the end of the data (JWRN_JPEG_EOF)
  char message[JMSG_LENGTH_MAX + 32];
} ipa_jpeg_reader;

typedef struct ipa_jpeg_header {
  uint32_t width;
  uint32_t height;
  int source_components;  // components in the file (1, 3 or 4)
  int jpeg_color_space;   // J_COLOR_SPACE detected by libjpeg
  int channels;           // output samples per pixel: 1 (gray), 3 (RGB) or 4 (CMYK, not inverted)
  int saw_adobe_marker;
} ipa_jpeg_header;

static inline void ipa_jpeg_error_exit(j_common_ptr cinfo) {
  ipa_jpeg_reader *r = (ipa_jpeg_reader *)cinfo->client_data;
  if (r->message[0] == 0) (*cinfo->err->format_message)(cinfo, r->message);
  longjmp(r->jump, 1);
}

/// Warnings are ignored like Pillow does, except running out of data, which Pillow reports as
/// "image file is truncated": that one becomes an error.
static inline void ipa_jpeg_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    ipa_jpeg_reader *r = (ipa_jpeg_reader *)cinfo->client_data;
    r->truncated = 1;
    ipa_jpeg_error_exit(cinfo);
  }
}

static inline void ipa_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

/// Called by libjpeg as decoding progresses: refuses files with more scans than `max_scans`
/// (a few kilobytes of hostile progressive JPEG can otherwise ask for thousands of passes over
/// the whole image, as libjpeg-turbo's own security notes describe).
static inline void ipa_jpeg_progress(j_common_ptr cinfo) {
  ipa_jpeg_reader *r = (ipa_jpeg_reader *)cinfo->client_data;
  if (cinfo->is_decompressor && r->max_scans > 0 &&
      ((j_decompress_ptr)cinfo)->input_scan_number > r->max_scans) {
    snprintf(r->message, sizeof r->message, "more than %d progressive scans", r->max_scans);
    longjmp(r->jump, 1);
  }
}

static inline ipa_jpeg_reader *ipa_jpeg_reader_new(void) {
  ipa_jpeg_reader *r = (ipa_jpeg_reader *)calloc(1, sizeof(ipa_jpeg_reader));
  return r;
}

/// Reads the header and starts decompression with libjpeg's defaults (ISLOW IDCT, fancy
/// upsampling), as Pillow does: 1 component -> gray, 3 -> RGB, 4 (CMYK/YCCK) -> CMYK.
/// The size in the header is checked against `max_pixels` BEFORE decompression starts (starting
/// a progressive JPEG allocates and clears buffers for the whole image): returns -2 with
/// `h->width`/`h->height` set when it is larger. libjpeg's own allocations are capped at
/// `max_memory` bytes and the number of scans at `max_scans`; -1 with `r->message` on any error.
/// A file declaring more than `max_pixels_per_byte` pixels per byte of its size (plus 2^20) is
/// refused before decompression starts: every 8×8 block of a complete JPEG costs at least one bit
/// (at most 512 pixels per byte, for a grayscale progressive file), so such a file can only be
/// decoded by libjpeg filling in what is missing after an early end-of-image marker — a
/// decompression bomb of a few hundred bytes.
static inline int ipa_jpeg_begin(
    ipa_jpeg_reader *r, const unsigned char *data, size_t size, ipa_jpeg_header *h,
    uint64_t max_pixels, long max_memory, int max_scans, uint64_t max_pixels_per_byte) {
  memset(h, 0, sizeof *h);
  r->cinfo.err = jpeg_std_error(&r->err);
  r->err.error_exit = ipa_jpeg_error_exit;
  r->err.emit_message = ipa_jpeg_emit_message;
  r->err.output_message = ipa_jpeg_output_message;
  r->cinfo.client_data = r;
  if (setjmp(r->jump)) return -1;
  jpeg_create_decompress(&r->cinfo);
  r->created = 1;
  jpeg_mem_src(&r->cinfo, (unsigned char *)data, (unsigned long)size);
  r->cinfo.mem->max_memory_to_use = max_memory;
  r->max_scans = max_scans;
  r->progress.progress_monitor = ipa_jpeg_progress;
  r->cinfo.progress = &r->progress;
  jpeg_read_header(&r->cinfo, TRUE);
  h->width = r->cinfo.image_width;
  h->height = r->cinfo.image_height;
  uint64_t pixels = (uint64_t)r->cinfo.image_width * (uint64_t)r->cinfo.image_height;
  if (pixels > max_pixels) return -2;
  if (max_pixels_per_byte > 0 && pixels > max_pixels_per_byte * (uint64_t)size + ((uint64_t)1 << 20)) {
    snprintf(r->message, sizeof r->message,
             "%ux%u pixels is more than %zu bytes of JPEG data can hold (a file that relies on the "
             "decoder filling in missing data)",
             r->cinfo.image_width, r->cinfo.image_height, size);
    return -1;
  }
  h->source_components = r->cinfo.num_components;
  h->jpeg_color_space = (int)r->cinfo.jpeg_color_space;
  h->saw_adobe_marker = r->cinfo.saw_Adobe_marker;
  switch (r->cinfo.num_components) {
    case 1: r->cinfo.out_color_space = JCS_GRAYSCALE; break;
    case 3: r->cinfo.out_color_space = JCS_RGB; break;
    case 4: r->cinfo.out_color_space = JCS_CMYK; break;
    default:
      snprintf(r->message, sizeof r->message, "cannot handle %d-component JPEG images",
               r->cinfo.num_components);
      return -1;
  }
  jpeg_start_decompress(&r->cinfo);
  h->width = r->cinfo.output_width;
  h->height = r->cinfo.output_height;
  h->channels = r->cinfo.output_components;
  return 0;
}

/// Decodes all scanlines into `dst` (`height * width * channels` bytes) and finishes.
static inline int ipa_jpeg_read_image(ipa_jpeg_reader *r, unsigned char *dst, size_t rowbytes) {
  if (setjmp(r->jump)) return -1;
  while (r->cinfo.output_scanline < r->cinfo.output_height) {
    JSAMPROW row = dst + (size_t)r->cinfo.output_scanline * rowbytes;
    if (jpeg_read_scanlines(&r->cinfo, &row, 1) != 1) {
      snprintf(r->message, sizeof r->message, "decoder stopped at scanline %u",
               r->cinfo.output_scanline);
      return -1;
    }
  }
  jpeg_finish_decompress(&r->cinfo);
  return 0;
}

static inline void ipa_jpeg_reader_free(ipa_jpeg_reader *r) {
  if (!r) return;
  if (r->created) jpeg_destroy_decompress(&r->cinfo);
  free(r);
}

#endif
