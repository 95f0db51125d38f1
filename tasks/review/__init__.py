"""Human review: the Label Studio client, push and pull, the rules that merge reviews into drafts, the review
queue and its audit, and the media reviewers watch."""
