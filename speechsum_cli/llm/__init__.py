"""The project's one OpenAI-compatible LLM client (synth, judges, eval, remote teachers).

Import from the submodules (``speechsum_cli.llm.client``, ``.config``, ...): this package imports
nothing, so the CLI can read an :class:`~speechsum_cli.llm.config.LLMConfig` without loading openai.
"""
