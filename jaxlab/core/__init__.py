"""The engine every jaxlab method shares: nothing in here is specific to one paper.

Modules are imported lazily by their users (`from jaxlab.core import train`) so that
`import jaxlab.core.config` stays cheap for the command line.
"""
