"""The `esms-callbacks` command line: run the stack, submit RefIds, watch events and state."""
