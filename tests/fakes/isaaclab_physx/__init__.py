"""isaaclab_physx (test double): the PhysX physics backend, which needs Isaac Sim."""
