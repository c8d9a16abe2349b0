// The only header Swift imports for BLAS. Debian's OpenBLAS puts cblas.h under
// /usr/include/<triple>/openblas-pthread/, found through pkg-config `openblas`; it also declares
// openblas_set_num_threads / openblas_get_corename, which elle uses to own the threading.
#include <cblas.h>
