/* Built and run by `cargo xtask verify`: embeds the archive's libpypy
   through pypy_embed.h exactly as an embedder would, and prints from PyPy.
   argv[1]: the path of libpypy (the home to search from). */
#include <stdio.h>
#include "pypy_embed.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH-OF-LIBPYPY\n", argv[0]);
        return 2;
    }
    int rc = rpython_startup_code();
    if (rc != 0) {
        fprintf(stderr, "rpython_startup_code returned %d\n", rc);
        return 3;
    }
    rc = pypy_setup_home(argv[1], 1);
    if (rc != 0) {
        fprintf(stderr, "pypy_setup_home(%s) returned %d\n", argv[1], rc);
        return 4;
    }
    pypy_init_threads();
    rc = pypy_execute_source(
        "import sys\n"
        "print('pypy-embed-ok', sys.prefix)\n"
        "sys.stdout.flush()\n");
    if (rc != 0) {
        fprintf(stderr, "pypy_execute_source returned %d\n", rc);
        return 5;
    }
    return 0;
}
