"""The graph's topic names, in one place: who publishes each, with which schema (protocols.messages).

Launch files remap them per node (``remap``), so these are the names a node declares, not necessarily the
names on the wire.
"""

ENV_OBS = "env/obs"  # Observation: the env's step, to the agent, shield, estimator and coupler
ENV_TRANSITIONS = "env/transitions"  # TransitionBatch: the env's replay stream, to the learner and estimator
ENV_EPISODES = "env/episodes"  # EpisodeEvents: ended episodes
ACTION_PROPOSED = "action/proposed"  # ProposedAction: the agent's proposals, to the shield
ACTION_SAFE = "action/safe"  # SafeAction: what the env executes (the shield's, or the coupler's)
ACTION_SHIELDED = "action/shielded"  # SafeAction: each body's shielded action, to the CBF coupler
SHIELD_REPORT = "shield/report"  # ShieldReport: the shield's interventions, explained
POLICY_WEIGHTS = "policy/weights"  # PolicyWeights: the learner's actor, to the agent
ESTIMATOR_STATE = "estimator/state"  # StateEstimate: the belief over hidden internal variables
ESTIMATOR_TRANSITIONS = "estimator/transitions"  # TransitionBatch: the replay stream with the belief in the input
ALLOCATOR_REQUESTS = "allocator/requests"  # StationRequests: bodies' requests for station service
ALLOCATOR_GRANTS = "allocator/grants"  # StationGrants: the allocator's shares
