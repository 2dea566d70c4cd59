"""Files on disk: the atomic writer every file goes through (`atomic`), tensor and JSON files (`io`), the
per-stage manifest of written files (`manifest`), the activation store (`activations`) and the check of a
finished stage's artifacts against done.json (`integrity`)."""
