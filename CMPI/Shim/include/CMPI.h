// The whole MPI surface elle's Swift code sees: plain C types only.
//
// Open MPI defines MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE... as macros that expand to
// addresses of internal globals, which Swift's C importer cannot import. Every call here uses the
// world communicator and returns an MPI error code (0 = success); cmpi_error_string turns a code
// into MPI's own message.
#ifndef CMPI_H
#define CMPI_H

#ifdef __cplusplus
extern "C" {
#endif

/// Initializes MPI with MPI_THREAD_FUNNELED (only the main thread calls MPI) and sets
/// MPI_ERRORS_RETURN on the world communicator so failures come back as codes, not aborts.
int cmpi_init(void);
int cmpi_finalize(void);
/// 1 if MPI_Init has run and MPI_Finalize has not.
int cmpi_is_initialized(void);
int cmpi_rank(int *rank);
int cmpi_size(int *size);
/// Ends every rank of the job with `code` (MPI_Abort on the world communicator).
void cmpi_abort(int code);
/// Writes MPI's message for `code` into `buffer` (NUL-terminated, truncated to `capacity`).
void cmpi_error_string(int code, char *buffer, int capacity);

#ifdef __cplusplus
}
#endif
#endif
