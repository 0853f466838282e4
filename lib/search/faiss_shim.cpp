/*
 * faiss_shim.cpp: the part of FAISS's C API that eosin uses, defined over
 * the C++ library, plus eosin's own additions. See faiss_shim.h.
 *
 * Every entry point catches every exception: a corrupt index file, a bad
 * factory string or a failed allocation becomes a negative return and a
 * message (faiss_get_last_error), never an abort. Messages are kept per
 * thread.
 */
#include "search/faiss_shim.h"

extern "C" {
#include "core/error.h"
}

#include <faiss/AutoTune.h>
#include <faiss/IVFlib.h>
#include <faiss/Index.h>
#include <faiss/IndexIVF.h>
#include <faiss/clone_index.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

thread_local std::string shim_last_error;

/* FAISS's messages carry the throwing function and file: keep only the
 * reason, which is what a user can act on. */
std::string faiss_reason(const faiss::FaissException &e)
{
	std::string m = e.msg.empty() ? std::string(e.what()) : e.msg;
	/* "Error in FUNCTION at FILE:LINE: REASON" */
	size_t at = m.rfind(" at ");
	if (m.compare(0, 9, "Error in ") == 0 && at != std::string::npos) {
		size_t colon = m.find(": ", at);
		if (colon != std::string::npos)
			m = m.substr(colon + 2);
	}
	/* some reasons repeat the function: "Class::method:reason" */
	size_t dd = m.find("::");
	if (dd != std::string::npos) {
		size_t sep = m.find(':', dd + 2);
		if (sep != std::string::npos && sep + 1 < m.size() && m[sep + 1] != ' ' &&
		    m[sep + 1] != ':' && m.find(' ') > sep)
			m = m.substr(sep + 1);
	}
	return m;
}

/* Run f, turning exceptions into the C API's error codes. */
template <typename F> int guarded(F f)
{
	try {
		f();
		return 0;
	} catch (const faiss::FaissException &e) {
		shim_last_error = faiss_reason(e);
		return -2; /* FAISS_EXCEPT */
	} catch (const std::bad_alloc &) {
		shim_last_error = "out of memory";
		return -4; /* STD_EXCEPT */
	} catch (const std::exception &e) {
		shim_last_error = e.what();
		return -4;
	} catch (...) {
		shim_last_error = "unknown exception";
		return -1; /* UNKNOWN_EXCEPT */
	}
}

faiss::Index *cxx(FaissIndex *p) { return reinterpret_cast<faiss::Index *>(p); }
const faiss::Index *cxx(const FaissIndex *p) { return reinterpret_cast<const faiss::Index *>(p); }

} // namespace

#ifndef EOSIN_HAVE_FAISS_C
extern "C" {

const char *faiss_get_last_error() { return shim_last_error.c_str(); }

int faiss_index_factory(FaissIndex **p_index, int d, const char *description,
                        FaissMetricType metric)
{
	return guarded([&] {
		*p_index = reinterpret_cast<FaissIndex *>(faiss::index_factory(
		    d, description, static_cast<faiss::MetricType>(metric)));
	});
}

void faiss_Index_free(FaissIndex *obj) { delete cxx(obj); }
int faiss_Index_d(const FaissIndex *index) { return cxx(index)->d; }
int faiss_Index_is_trained(const FaissIndex *index) { return cxx(index)->is_trained; }
idx_t faiss_Index_ntotal(const FaissIndex *index) { return cxx(index)->ntotal; }
FaissMetricType faiss_Index_metric_type(const FaissIndex *index)
{
	return static_cast<FaissMetricType>(cxx(index)->metric_type);
}

int faiss_Index_train(FaissIndex *index, idx_t n, const float *x)
{
	return guarded([&] { cxx(index)->train(n, x); });
}

int faiss_Index_add(FaissIndex *index, idx_t n, const float *x)
{
	return guarded([&] { cxx(index)->add(n, x); });
}

int faiss_Index_add_with_ids(FaissIndex *index, idx_t n, const float *x, const idx_t *xids)
{
	return guarded([&] { cxx(index)->add_with_ids(n, x, xids); });
}

int faiss_Index_search(const FaissIndex *index, idx_t n, const float *x, idx_t k,
                       float *distances, idx_t *labels)
{
	return guarded([&] { cxx(index)->search(n, x, k, distances, labels); });
}

int faiss_Index_reconstruct(const FaissIndex *index, idx_t key, float *recons)
{
	return guarded([&] { cxx(index)->reconstruct(key, recons); });
}

int faiss_Index_reset(FaissIndex *index)
{
	return guarded([&] { cxx(index)->reset(); });
}

int faiss_write_index_fname(const FaissIndex *idx, const char *fname)
{
	return guarded([&] { faiss::write_index(cxx(idx), fname); });
}

int faiss_write_index(const FaissIndex *idx, FILE *f)
{
	return guarded([&] { faiss::write_index(cxx(idx), f); });
}

int faiss_read_index_fname(const char *fname, int io_flags, FaissIndex **p_out)
{
	*p_out = nullptr;
	return guarded([&] {
		*p_out = reinterpret_cast<FaissIndex *>(faiss::read_index(fname, io_flags));
	});
}

int faiss_read_index(FILE *f, int io_flags, FaissIndex **p_out)
{
	*p_out = nullptr;
	return guarded([&] {
		*p_out = reinterpret_cast<FaissIndex *>(faiss::read_index(f, io_flags));
	});
}

int faiss_clone_index(const FaissIndex *idx, FaissIndex **p_out)
{
	return guarded([&] {
		*p_out = reinterpret_cast<FaissIndex *>(faiss::clone_index(cxx(idx)));
	});
}

int faiss_ParameterSpace_new(FaissParameterSpace **space)
{
	return guarded([&] {
		*space = reinterpret_cast<FaissParameterSpace *>(new faiss::ParameterSpace());
	});
}

void faiss_ParameterSpace_free(FaissParameterSpace *space)
{
	delete reinterpret_cast<faiss::ParameterSpace *>(space);
}

int faiss_ParameterSpace_set_index_parameter(const FaissParameterSpace *space, FaissIndex *index,
                                             const char *name, double value)
{
	return guarded([&] {
		reinterpret_cast<const faiss::ParameterSpace *>(space)->set_index_parameter(
		    cxx(index), name, value);
	});
}

} // extern "C"
#endif /* EOSIN_HAVE_FAISS_C */

extern "C" int eosin_faiss_is_ivf(const FaissIndex *index)
{
	try {
		return faiss::ivflib::try_extract_index_ivf(const_cast<faiss::Index *>(cxx(index))) !=
		       nullptr;
	} catch (...) {
		return 0;
	}
}

extern "C" int eosin_faiss_merge_into(FaissIndex *dst, FaissIndex *src)
{
	faiss::Index *a = cxx(dst), *b = cxx(src);
	int rc = guarded([&] {
		if (a->d != b->d || a->metric_type != b->metric_type)
			throw std::runtime_error("dimension or metric differ");
		if (eosin_faiss_is_ivf(dst) && eosin_faiss_is_ivf(src)) {
			faiss::ivflib::merge_into(a, b, true);
			return;
		}
		/* No inverted lists: re-add src's vectors in id order, in
		 * blocks so that memory stays bounded. */
		const idx_t block = 4096;
		std::vector<float> x((size_t)block * (size_t)b->d);
		for (idx_t i = 0; i < b->ntotal; i += block) {
			idx_t n = std::min(block, b->ntotal - i);
			b->reconstruct_n(i, n, x.data());
			a->add(n, x.data());
		}
		b->reset();
	});
	if (rc < 0)
		return eosin_error("cannot merge indices: %s", shim_last_error.c_str());
	return 0;
}
