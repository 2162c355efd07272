"""The Textual terminal UI (imported only by the `chat` command, never by core modules).

app.py holds the application; widgets/ has one widget a file, screens/ the
modal screens, app.tcss the stylesheet. options.py, retrieval.py and keys.py
import no textual and can be used (and tested) on their own.
"""
