"""Stream inventory: which boundary each topic crosses, who owns it, and whether the plan holds.

`measurements` is the input shape for per-topic figures (a file, or GET /api/v1/measurements);
`meter` measures them live in the broker (rolling window, time passed in); `checks` turns the
declared `[[streams]]` plus measurements into findings. All pure.
"""
