/* quant_arm_i8mm.c - the aarch64 quantized kernels at the "i8mm" level:
 * quant_arm_kern.h compiled with ARM_LEVEL 3 (CMakeLists.txt gives this file
 * its -march flags). Empty on other architectures. */
#define ARM_LEVEL 3
#define ARM_ENTRY quant_arm_matmul_i8mm
#include "quant_arm_kern.h"
