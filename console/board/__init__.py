"""The live incident board: model (ids + row cache, sorted and filtered), change feed, actions, widget."""
