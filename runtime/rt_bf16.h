/* bf16 <-> f32, inline for the CPU backend's inner loops. */
#ifndef LUKV_RT_BF16_H
#define LUKV_RT_BF16_H

#include <stdint.h>
#include <string.h>

static inline float lukv_rt_bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Round to nearest even, as torch and CUDA's __float2bfloat16 do, so that the
 * CPU twin and a GPU kernel agree bit for bit on stored rows. */
static inline uint16_t lukv_rt_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) /* NaN: keep it a NaN */
    return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

#endif
