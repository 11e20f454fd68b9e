"""DARTS (Liu et al. 2019, *DARTS: Differentiable Architecture Search*): a supernet whose edges
mix every op of a cell space by softmax weights, trained bilevel (weights on the training split,
architecture parameters on the validation split), and decoded into a genome of the space."""
