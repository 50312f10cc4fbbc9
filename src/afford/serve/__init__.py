"""``afford serve``: the web demo (gradio; extra ``afford[web]``).  See docs/serve.md.

:mod:`afford.serve.handlers` holds what the buttons do (on the Python API only);
:mod:`afford.serve.app` the gradio page."""
