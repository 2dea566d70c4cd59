"""What every part uses: the one error type (`errors`), threads and devices (`runtime`), torchrun ranks
(`distributed`), per-class helpers (`classwise`) and the finite-number guard (`finite`)."""
