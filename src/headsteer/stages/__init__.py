"""Pipeline stages; each `run(cfg, folder)` reads earlier stages' files and writes its own.

No stage imports another: they talk only through the files of the run folder. The runner (`runner`) holds
the run folder's lock (`runlock`) and skips a finished, intact stage; `common`, `resume` and `signals`
serve the stages and the command line.
"""

from headsteer.stages.runner import DISTRIBUTED_STAGES, available, check_upstream, run_all, run_stage

__all__ = ["DISTRIBUTED_STAGES", "available", "check_upstream", "run_all", "run_stage"]
