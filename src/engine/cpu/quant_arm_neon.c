/* quant_arm_neon.c - the aarch64 quantized kernels at the "neon" level:
 * quant_arm_kern.h compiled with ARM_LEVEL 1 (CMakeLists.txt gives this file
 * its -march flags). Empty on other architectures. */
#define ARM_LEVEL 1
#define ARM_ENTRY quant_arm_matmul_neon
#include "quant_arm_kern.h"
