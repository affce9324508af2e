"""The live incident board: model (ids + row cache), proxy (sort/filter), change feed, actions, widget."""
