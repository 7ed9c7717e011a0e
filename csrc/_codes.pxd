# Integer codes that cross into the compiled kernels: a mirror of fastnn/_codes.py.
# Change a value here and there together; tests/test_codes.py checks that they agree.

cdef enum Activation:
    IDENTITY = 0
    LOGISTIC = 1
    TANH = 2
    RELU = 3
    SOFTMAX = 4

cdef enum Loss:
    SQUARED_ERROR = 0
    BINARY_LOG_LOSS = 1
    LOG_LOSS = 2
    PERCEPTRON = 3

cdef enum Optimizer:
    SGD = 0
    ADAM = 1

cdef enum Noise:
    NO_NOISE = 0
    MASK_NOISE = 1
    GAUSSIAN_NOISE = 2
