"""
Quick start
===========

Train a small network on the UCI handwritten digits that ship with fastbp, look at its
training curves, check its gradients against finite differences and save it.

Run from the repository root: ``python examples/quickstart.py`` (a few seconds).
"""
# %%
# The data: 1797 8x8 images of digits, 64 features in [0, 1], 10 classes. fastbp's own
# stratified split keeps a quarter for testing.
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import fastbp
from fastbp.datasets import load_digits, train_test_split

X, y = load_digits()
X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=0.25, seed=0)
print(X_train.shape, X_test.shape, X.dtype)

# %%
# A network is its layer sizes, activations and initializer; the Trainer holds the loss
# and the optimizer. Softmax output pairs with cross-entropy (the default loss for it).
net = fastbp.Network([64, 128, 10], activation="relu", output="softmax",
                     init="he_normal", seed=0)
trainer = fastbp.Trainer(net, loss="cross_entropy", optimizer="sgd", lr=0.05,
                         momentum=0.9, batch_size=32, seed=0)
history = trainer.fit(X_train, y_train, epochs=20, validation_data=(X_test, y_test))
print(f"test accuracy after {len(history.loss)} epochs: {history.val_accuracy[-1]:.3f}")
print(f"training throughput: {np.median(history.samples_per_second):,.0f} samples/s")

# %%
# Every epoch's numbers are in the History.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
epochs = np.arange(1, len(history.loss) + 1)
ax1.plot(epochs, history.loss, label="training loss")
ax1.plot(epochs, history.val_loss, label="test loss")
ax1.set(xlabel="epoch", ylabel="cross-entropy", yscale="log")
ax1.legend()
ax2.plot(epochs, 100 * np.array(history.accuracy), label="training")
ax2.plot(epochs, 100 * np.array(history.val_accuracy), label="test")
ax2.set(xlabel="epoch", ylabel="accuracy (%)")
ax2.legend()
plt.show()

# %%
# The gradients backpropagation computes, checked against central finite differences
# in float64: the largest relative error over every weight, bias and input.
loss, grads = net.loss_and_gradients(X_test[:10], y_test[:10])
print("dE/dW shapes:", [g.shape for g in grads.weights], " dE/dX:", grads.inputs.shape)
print("gradient check, max relative error:",
      f"{fastbp.gradient_check(net, X_test[:5], y_test[:5]):.1e}")

# %%
# Saving writes one checksummed file; loading it gives the same predictions bit for bit.
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "digits.fbp")
    net.save(path)
    again = fastbp.Network.load(path)
    print(again)
    print("identical predictions:", np.array_equal(again.predict(X_test), net.predict(X_test)))
