/* Built and run by `cargo xtask verify` for archives that bundle OpenSSL: a
   host program that uses the system's OpenSSL itself (linked before
   libpypy, so its symbols come first) and embeds the archive's libpypy.
   Each side must see its own copy: the host the system's, Python's `ssl`
   the bundled one. argv[1]: the path of libpypy (the home to search from). */
#include <stdio.h>
#include <openssl/crypto.h>
#include "pypy_embed.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH-OF-LIBPYPY\n", argv[0]);
        return 2;
    }
    printf("host: %s\n", OpenSSL_version(OPENSSL_VERSION));
    fflush(stdout);
    if (rpython_startup_code() != 0 || pypy_setup_home(argv[1], 1) != 0) {
        fprintf(stderr, "PyPy did not start\n");
        return 3;
    }
    pypy_init_threads();
    if (pypy_execute_source(
            "import ssl, sys, hashlib\n"
            "hashlib.sha256(b'x').hexdigest()\n"
            "sys.stdout.write('pypy: ' + ssl.OPENSSL_VERSION + '\\n')\n"
            "sys.stdout.flush()\n") != 0) {
        fprintf(stderr, "pypy_execute_source failed\n");
        return 4;
    }
    printf("host again: %s\n", OpenSSL_version(OPENSSL_VERSION));
    return 0;
}
