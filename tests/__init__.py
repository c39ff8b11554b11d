"""posegate's own tests, by what they check: stages/ (the stage tests a user runs), backends/ (device plumbing on
stand-ins), diagnosis/, port/ (the port audit) and machinery/ (everything the stages stand on)."""
