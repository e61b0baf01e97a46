using Integration.Testing.NUnit;
using NUnit.Framework;

/// <summary>Stops the shared test infrastructure after the last test of this assembly.</summary>
[SetUpFixture]
public sealed class IntegrationSetUp : IntegrationSetUpFixture;
