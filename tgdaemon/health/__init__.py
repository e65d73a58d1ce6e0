"""Account health (issue 14): is the account alive, frozen or spam-limited, and how many sessions it has."""
