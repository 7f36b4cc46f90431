/*
 * pypy_embed.h - the C embedding interface exported by libpypy (a PyPy
 * translated with --shared). PyPy removed its own PyPy.h in 7.3.8; this
 * header is added to include/ by the archives built with `cargo xtask
 * package` / `cargo xtask repackage`. See docs/archive-format.md.
 *
 * Order of calls: rpython_startup_code() once per process, then
 * pypy_setup_home(), then pypy_init_threads() before any second thread
 * touches PyPy. There is no finalize function.
 */
#ifndef PYPY_EMBED_H
#define PYPY_EMBED_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && !defined(PYPY_EMBED_NO_DLLIMPORT)
#  define PYPY_EMBED_API __declspec(dllimport)
#else
#  define PYPY_EMBED_API
#endif

/* Once per process, before anything else: 0 the first time, 67 if it had
   already run. Its guard is not thread-safe. */
PYPY_EMBED_API int rpython_startup_code(void);

/* Finds the standard library by walking up from `home` (usually the path of
   libpypy itself) and imports site. 0 ok, 1 standard library not found,
   -1 Python error. May be retried. */
PYPY_EMBED_API int pypy_setup_home(char *home, int verbose);

/* Only after pypy_setup_home(); needed before a second thread uses PyPy. */
PYPY_EMBED_API void pypy_init_threads(void);

/* Runs `source` in a fresh globals dict (kept alive forever). 0 ok, -1 on an
   exception (only its type and value reach stderr). */
PYPY_EMBED_API int pypy_execute_source(char *source);

/* Same; the code sees `ptr` as the integer `c_argument`. */
PYPY_EMBED_API int pypy_execute_source_ptr(char *source, void *ptr);

/* For threads started outside PyPy; not thread-safe itself (hold a lock). */
PYPY_EMBED_API void pypy_thread_attach(void);

/* The same functions as pointer types, for programs that dlopen libpypy. */
typedef int (*rpython_startup_code_fn)(void);
typedef int (*pypy_setup_home_fn)(char *home, int verbose);
typedef void (*pypy_init_threads_fn)(void);
typedef int (*pypy_execute_source_fn)(char *source);
typedef int (*pypy_execute_source_ptr_fn)(char *source, void *ptr);
typedef void (*pypy_thread_attach_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* PYPY_EMBED_H */
