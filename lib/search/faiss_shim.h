/*
 * faiss_shim.h: FAISS for C, through FAISS's own C API.
 *
 * Debian's libfaiss-dev (1.7.3) ships the C API headers (faiss/c_api/) but
 * not the library behind them (libfaiss_c). lib/search/faiss_shim.cpp defines the
 * C API functions eosin uses, with the names and signatures of those
 * headers, over the C++ library; every C++ exception is caught and kept as
 * the message faiss_get_last_error() returns. When a system libfaiss_c is
 * found at build time (the Makefile defines EOSIN_HAVE_FAISS_C and links
 * -lfaiss_c), the shim's C API part is left out and the system's is used.
 *
 * C API functions defined by the shim (all return 0 or a negative
 * FaissErrorCode, except getters):
 *   faiss_get_last_error, faiss_index_factory, faiss_Index_free,
 *   faiss_Index_d, faiss_Index_is_trained, faiss_Index_ntotal,
 *   faiss_Index_metric_type, faiss_Index_train, faiss_Index_add,
 *   faiss_Index_add_with_ids, faiss_Index_search, faiss_Index_reconstruct,
 *   faiss_Index_reset, faiss_write_index_fname, faiss_write_index,
 *   faiss_read_index_fname, faiss_read_index,
 *   faiss_clone_index, faiss_ParameterSpace_new, faiss_ParameterSpace_free,
 *   faiss_ParameterSpace_set_index_parameter.
 *
 * eosin's own additions (not in any FAISS C API; always built, over the C++
 * library; they report through eosin_error(), return 0 or -1):
 *   eosin_faiss_merge_into   move all of src's entries into dst
 *   eosin_faiss_is_ivf       does the index (maybe behind a transform) use
 *                            inverted lists
 */
#ifndef EOSIN_FAISS_SHIM_H
#define EOSIN_FAISS_SHIM_H

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/clone_index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Move every entry of src into dst, src's ids shifted by dst's count, and
 * leave src empty. Both must come from the same trained index (inverted
 * lists: same coarse quantizer; flat and graph indices: any, their vectors
 * are re-added). */
int eosin_faiss_merge_into(FaissIndex *dst, FaissIndex *src);
/* 1 when the index keeps inverted lists (IVF, maybe under OPQ/PCA), else 0. */
int eosin_faiss_is_ivf(const FaissIndex *index);

#ifdef __cplusplus
}
#endif

#endif
