"""The guidance mathematics: pure functions over logits, confidences and weights, shared by every model.

Import the submodules directly (``softcfg.guidance.weights`` ...): ``schedules``, ``weights``,
``confidence`` and ``entropy`` use tensor methods only and import no torch at load time, so a config can
name schedules and confidences without loading torch; ``cfg`` (filters, sampling) needs torch.
"""
