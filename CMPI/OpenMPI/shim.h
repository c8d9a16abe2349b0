// Found through pkg-config `ompi`. Swift never imports mpi.h directly (its handles are macros);
// only the CMPI shim in ../Shim compiles against it.
#include <mpi.h>
