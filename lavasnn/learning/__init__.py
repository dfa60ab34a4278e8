"""Learning rules and the backprop baseline they are compared with."""
