"""Air-gapped deployment: a bundle that installs and runs with no network and no compiler.

- ``wheels``: the runtime's installed distributions packed back into wheels (exact versions).
- ``make``: the bundle directory (or .tar.gz): wheels, models, knowledge bases, recipes, manifest.
- ``site_install``: install.py of a bundle (standard library only; runs on the site's python3).
"""
