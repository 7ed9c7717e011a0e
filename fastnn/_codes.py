"""Integer codes that cross into the kernels, one table per concept.

Strings never reach compiled code: the estimators translate their options with these
tables, and ``csrc/_codes.pxd`` mirrors them as ``cdef enum``s (the Numba kernels import
this module). Change a value here and in the ``.pxd`` together; ``tests/test_codes.py``
checks that they agree.
"""

# Activation functions, used for hidden layers and for the output layer.
IDENTITY = 0
LOGISTIC = 1
TANH = 2
RELU = 3
SOFTMAX = 4  # output layer only

ACTIVATIONS = {
    "identity": IDENTITY,
    "logistic": LOGISTIC,
    "tanh": TANH,
    "relu": RELU,
    "softmax": SOFTMAX,
}
HIDDEN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")

# Losses. Valid (output activation, loss) pairs for networks:
#   (identity, SQUARED_ERROR), (logistic, SQUARED_ERROR),
#   (logistic, BINARY_LOG_LOSS), (softmax, LOG_LOSS).
# PERCEPTRON is the criterion max(0, -y a(x)) of perceptron_epoch.
SQUARED_ERROR = 0
BINARY_LOG_LOSS = 1
LOG_LOSS = 2
PERCEPTRON = 3

LOSSES = {
    "squared_error": SQUARED_ERROR,
    "binary_log_loss": BINARY_LOG_LOSS,
    "log_loss": LOG_LOSS,
    "perceptron": PERCEPTRON,
}

# Stochastic optimisers (lbfgs never reaches a kernel's update step).
SGD = 0
ADAM = 1

OPTIMIZERS = {"sgd": SGD, "adam": ADAM}

# Input corruption of denoising autoencoders.
NO_NOISE = 0
MASK_NOISE = 1
GAUSSIAN_NOISE = 2

NOISES = {None: NO_NOISE, "mask": MASK_NOISE, "gaussian": GAUSSIAN_NOISE}
