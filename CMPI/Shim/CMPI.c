#include "CMPI.h"
#include <mpi.h>
#include <string.h>

int cmpi_init(void) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return rc;
    return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

int cmpi_finalize(void) { return MPI_Finalize(); }

int cmpi_is_initialized(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

int cmpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }
int cmpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }
void cmpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

void cmpi_error_string(int code, char *buffer, int capacity) {
    if (capacity <= 0) return;
    char message[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, message, &length) != MPI_SUCCESS) {
        strncpy(buffer, "unknown MPI error", (size_t)capacity - 1);
    } else {
        strncpy(buffer, message, (size_t)capacity - 1);
    }
    buffer[capacity - 1] = '\0';
}
