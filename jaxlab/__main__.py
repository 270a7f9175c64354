"""`python -m jaxlab` runs the jaxlab command line."""

from jaxlab.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
