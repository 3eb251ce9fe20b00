"""Evaluation harness: gold sets, validator, relevance by evidence, retrieval and answer
metrics, pluggable judges, the runner behind ``mlrag eval`` and its reports."""
