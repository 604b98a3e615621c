"""The bounds on what one silence may hold, wherever it comes from (API, topic, config).

Each is checked before any work that grows with the input, so that no silence can stall the
worker; README.md ("Silences") lists them. Kept apart so that the config can import them.
"""

#: The longest label name a matcher may name.
MAX_NAME_CHARS = 128
#: The longest value (or regular expression) of a matcher.
MAX_VALUE_CHARS = 1024
#: The longest matcher text (`name=~"value"`): a value may be quoted with every character
#: escaped, and padded with some white space.
MAX_MATCHER_TEXT_CHARS = MAX_NAME_CHARS + 2 * MAX_VALUE_CHARS + 64
#: The most matchers one silence may have.
MAX_MATCHERS = 32
#: The longest comment, and the longest `createdBy`, a silence may carry.
MAX_COMMENT_CHARS = 4096
MAX_CREATED_BY_CHARS = 256
