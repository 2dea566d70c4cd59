"""Work with a finished run from Python: `load_run(RUN)` gives a `Run`.

    import headsteer
    run = headsteer.load_run("runs/demo")
    test = run.data.test
    out = run.steer(test.images, strategy="per_class", labels=test.labels, alpha=1.5)
    out.accuracy(test.labels), out.usage.mean()

Everything comes from the run folder, its config included (each stage folder's `config.json` holds
the full resolved config), and is loaded on first use. Steering, the threshold baseline and the plain
forward pass run the whole model on images, through the same code the pipeline uses; their outputs
are per image, on the CPU.
"""

from headsteer.api.inputs import ImageInput
from headsteer.api.run import Run, load_run
from headsteer.api.strengths import LearnedStrengths
from headsteer.api.types import LatentStats, Outputs, RunSAE

__all__ = ["load_run", "Run", "Outputs", "LatentStats", "RunSAE", "LearnedStrengths", "ImageInput"]
