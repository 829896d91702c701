"""SAC learning code shared by the agent and learner nodes (process-free).

Modules, each with one job:
- ``spec``: ``ActorSpec``, the actor architecture as data (torch-free).
- ``networks``: the torch ``Actor`` (the one policy network) and ``TwinQ`` critics.
- ``policy_file``: ``Policy`` = spec + tensors + version; files and the wire form, validated.
- ``inference``: ``NumpyActor`` / ``TorchActor`` for the agent; ``make_inference_actor``.
- ``replay``: the learner's bounded replay ring buffer on its device.
- ``config``: ``SACConfig`` and ``CVaRSACConfig``, the one home of the hyperparameters (torch-free).
- ``sac``: ``SAC`` (updates, targets, entropy tuning, checkpoints).

Nothing here imports torch at package import time.
"""
