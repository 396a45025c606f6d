/* The constants of fastbp's activations, defined once: the C kernels (_simd.h,
 * _kernels.pyx) use them, and _kernels exports them to Python (fastbp.activations). */
#ifndef FASTBP_CONSTANTS_H
#define FASTBP_CONSTANTS_H

/* LeCun's scaled tanh (Efficient BackProp, 1998): f(x) = A tanh(B x) */
#define FBP_LECUN_A 1.7159
#define FBP_LECUN_B (2.0 / 3.0)
/* leaky ReLU: f(x) = x for x > 0, else SLOPE x */
#define FBP_LEAKY_SLOPE 0.01
/* GELU, tanh form: f(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + C x^3))) */
#define FBP_GELU_C 0.044715
#define FBP_SQRT_2_OVER_PI 0.7978845608028654

#endif
