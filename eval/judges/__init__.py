"""Support judges: does a piece of context support an answer sentence? Pluggable by name
(``offline``, ``nli``, ``claude``); see :func:`eval.judges.base.build_judge`."""
