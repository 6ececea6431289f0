/* cudasim's CUB: DeviceSegmentedRadixSort (SortKeys, SortPairs and their
 * Descending forms) and BlockScan::ExclusiveSum, with CUB's documented
 * semantics (cub/device/device_radix_sort.cuh): the sort is stable; float
 * keys are ordered by their bits after CUB's transformation (sign bit flipped
 * for positives, all bits for negatives; -0.0 equals +0.0; NaNs by their
 * bits), descending sorts invert the transformed key, and [begin_bit,
 * end_bit) selects the bits compared. */
#ifndef LUKV_CUDASIM_CUB_H
#define LUKV_CUDASIM_CUB_H

#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <numeric>
#include <type_traits>
#include <vector>

namespace cub {
namespace cudasim_detail {

template <class K>
inline uint64_t radix_bits(K key, bool descending) {
  uint64_t u;
  if (std::is_same<K, float>::value) {
    uint32_t b;
    memcpy(&b, &key, 4);
    if (b == 0x80000000u) b = 0; /* -0.0 == +0.0 */
    b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    u = b;
  } else if (std::is_same<K, double>::value) {
    uint64_t b;
    memcpy(&b, &key, 8);
    if (b == 0x8000000000000000ull) b = 0;
    b = (b & 0x8000000000000000ull) ? ~b : (b | 0x8000000000000000ull);
    u = b;
  } else if (std::is_signed<K>::value) {
    u = (uint64_t)(int64_t)key ^ (1ull << (sizeof(K) * 8 - 1));
  } else {
    u = (uint64_t)key;
  }
  if (sizeof(K) < 8) u &= (1ull << (sizeof(K) * 8)) - 1;
  if (descending) u = ~u & (sizeof(K) < 8 ? (1ull << (sizeof(K) * 8)) - 1 : ~0ull);
  return u;
}

/* One segmented sort; values may be null (SortKeys). */
template <class K, class V, class BeginIt, class EndIt>
cudaError_t segmented_sort(void *tmp, size_t &tmp_bytes, const K *kin, K *kout, const V *vin, V *vout,
                           long long num_items, long long num_segments, BeginIt begin, EndIt end, int begin_bit,
                           int end_bit, cudaStream_t stream, bool descending) {
  if (!tmp) {
    tmp_bytes = 256; /* asked for, checked below, unused */
    return cudaSuccess;
  }
  if (tmp_bytes < 256 || begin_bit < 0 || end_bit > (int)(sizeof(K) * 8) || begin_bit >= end_bit ||
      num_items < 0 || num_segments < 0)
    return cudaErrorInvalidValue;
  const char *who = "cub::DeviceSegmentedRadixSort";
  const void *ptrs[] = {tmp, kin, kout, vin, vout};
  for (int i = 0; i < 5; i++) ::cudasim::check_device_pointer(who, "pointer", i, ptrs[i]);
  if constexpr (std::is_pointer<BeginIt>::value) ::cudasim::check_device_pointer(who, "offsets", 0, begin);
  if constexpr (std::is_pointer<EndIt>::value) ::cudasim::check_device_pointer(who, "offsets", 1, end);
  ::cudasim::access_list accesses{{tmp, true, who}, {kin, false, who}, {kout, true, who}, {vin, false, who},
                                  {vout, true, who}};
  if constexpr (std::is_pointer<BeginIt>::value) accesses.push_back({(const void *)begin, false, who});
  if constexpr (std::is_pointer<EndIt>::value) accesses.push_back({(const void *)end, false, who});
  return ::cudasim::enqueue(stream, who, [=]() {
    const uint64_t width = (uint64_t)(end_bit - begin_bit);
    const uint64_t mask = width >= 64 ? ~0ull : ((1ull << width) - 1);
    std::vector<std::pair<uint64_t, long long>> items;
    std::vector<K> ks;
    std::vector<V> vs;
    for (long long s = 0; s < num_segments; s++) {
      const long long b = (long long)begin[s], e = (long long)end[s];
      if (e <= b) continue;
      items.clear();
      for (long long i = b; i < e; i++) items.push_back({(radix_bits(kin[i], descending) >> begin_bit) & mask, i});
      std::stable_sort(items.begin(), items.end(),
                       [](const std::pair<uint64_t, long long> &x, const std::pair<uint64_t, long long> &y) {
                         return x.first < y.first;
                       });
      /* Gathered into ks / vs first, so an output that aliases the input still sorts right. */
      ks.resize(e - b);
      vs.resize(vin ? e - b : 0);
      for (long long i = 0; i < e - b; i++) {
        ks[i] = kin[items[i].second];
        if (vin) vs[i] = vin[items[i].second];
      }
      for (long long i = 0; i < e - b; i++) {
        kout[b + i] = ks[i];
        if (vin) vout[b + i] = vs[i];
      }
    }
  }, std::move(accesses));
}

}  // namespace cudasim_detail

struct DeviceSegmentedRadixSort {
  template <class K, class NumItemsT, class BeginIt, class EndIt>
  static cudaError_t SortKeys(void *tmp, size_t &tmp_bytes, const K *kin, K *kout, NumItemsT num_items,
                              int num_segments, BeginIt begin, EndIt end, int begin_bit = 0,
                              int end_bit = sizeof(K) * 8, cudaStream_t stream = 0) {
    return cudasim_detail::segmented_sort<K, int>(tmp, tmp_bytes, kin, kout, (const int *)nullptr, (int *)nullptr,
                                                  (long long)num_items, num_segments, begin, end, begin_bit, end_bit,
                                                  stream, false);
  }
  template <class K, class NumItemsT, class BeginIt, class EndIt>
  static cudaError_t SortKeysDescending(void *tmp, size_t &tmp_bytes, const K *kin, K *kout, NumItemsT num_items,
                                        int num_segments, BeginIt begin, EndIt end, int begin_bit = 0,
                                        int end_bit = sizeof(K) * 8, cudaStream_t stream = 0) {
    return cudasim_detail::segmented_sort<K, int>(tmp, tmp_bytes, kin, kout, (const int *)nullptr, (int *)nullptr,
                                                  (long long)num_items, num_segments, begin, end, begin_bit, end_bit,
                                                  stream, true);
  }
  template <class K, class V, class NumItemsT, class BeginIt, class EndIt>
  static cudaError_t SortPairs(void *tmp, size_t &tmp_bytes, const K *kin, K *kout, const V *vin, V *vout,
                               NumItemsT num_items, int num_segments, BeginIt begin, EndIt end, int begin_bit = 0,
                               int end_bit = sizeof(K) * 8, cudaStream_t stream = 0) {
    return cudasim_detail::segmented_sort(tmp, tmp_bytes, kin, kout, vin, vout, (long long)num_items, num_segments,
                                          begin, end, begin_bit, end_bit, stream, false);
  }
  template <class K, class V, class NumItemsT, class BeginIt, class EndIt>
  static cudaError_t SortPairsDescending(void *tmp, size_t &tmp_bytes, const K *kin, K *kout, const V *vin,
                                         V *vout, NumItemsT num_items, int num_segments, BeginIt begin, EndIt end,
                                         int begin_bit = 0, int end_bit = sizeof(K) * 8, cudaStream_t stream = 0) {
    return cudasim_detail::segmented_sort(tmp, tmp_bytes, kin, kout, vin, vout, (long long)num_items, num_segments,
                                          begin, end, begin_bit, end_bit, stream, true);
  }
};

/* Block-wide exclusive prefix sum over a 1-D block of BLOCK_DIM_X threads. */
template <class T, int BLOCK_DIM_X>
class BlockScan {
 public:
  struct TempStorage {
    T v[BLOCK_DIM_X];
  };
  explicit BlockScan(TempStorage &t) : t_(t) {}
  void ExclusiveSum(T in, T &out, T &aggregate) {
    const int tid = (int)threadIdx.x;
    t_.v[tid] = in;
    __syncthreads();
    T s = T(0), all = T(0);
    for (int i = 0; i < BLOCK_DIM_X; i++) {
      if (i == tid) s = all;
      all = all + t_.v[i];
    }
    out = s;
    aggregate = all;
    /* No barrier here, as in CUB: reusing the storage needs the caller's. */
  }
  void ExclusiveSum(T in, T &out) {
    T agg;
    ExclusiveSum(in, out, agg);
  }

 private:
  TempStorage &t_;
};

}  // namespace cub

#endif
