"""Learning rules and their reference trainers (BioGrad, backprop baseline)."""
