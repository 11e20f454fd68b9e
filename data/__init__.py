"""Datasets and task families: the supervised datasets of a run (digits, MNIST-1D, MNIST,
Fashion-MNIST, CIFAR-10) and the few-shot task families of the meta-learners. A foundation
layer: it imports nothing of evograph but :mod:`evograph.errors`."""
